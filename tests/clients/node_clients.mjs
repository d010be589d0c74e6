// openai-node and ollama-js against a live box: chat, a stream, tools while streaming, a bare
// model name. Run by tests/clients/run (make test-clients) with BOX_URL and NODE_PATH set.
import OpenAI from "openai";
import { Ollama } from "ollama";

const box = process.env.BOX_URL;
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
function check(ok, what) {
  if (!ok) throw new Error(`failed: ${what}`);
  console.log(`ok - ${what}`);
}

const openai = new OpenAI({ baseURL: `${box}/v1`, apiKey: "unused" });
const reply = await openai.chat.completions.create({
  model: "smollm2",
  messages: [{ role: "user", content: "Say hello." }],
  max_tokens: 16,
});
check(reply.choices[0].message.content.length > 0, "openai-node chat with a bare model name");

let streamed = "";
for await (const chunk of await openai.chat.completions.create({
  model: "smollm2:135m",
  messages: [{ role: "user", content: "Count to three." }],
  max_tokens: 16,
  stream: true,
  stream_options: { include_usage: true },
})) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
}
check(streamed.length > 0, "openai-node stream");

let calls = [];
let finish = null;
for await (const chunk of await openai.chat.completions.create({
  model: "smollm2",
  messages: [{ role: "user", content: "What is the weather in Paris?" }],
  tools: [weather],
  tool_choice: "required",
  stream: true,
  max_tokens: 64,
})) {
  for (const choice of chunk.choices) {
    calls = calls.concat(choice.delta?.tool_calls ?? []);
    finish = choice.finish_reason ?? finish;
  }
}
check(finish === "tool_calls" && calls[0]?.function?.name === "get_weather", "openai-node tools while streaming");

const ollama = new Ollama({ host: box });
const chat = await ollama.chat({
  model: "smollm2",
  messages: [{ role: "user", content: "Say hi." }],
  options: { num_predict: 16, temperature: null },
});
check(chat.message.content.length > 0 && chat.done, "ollama-js chat with null options");
let last = null;
for await (const part of await ollama.chat({
  model: "smollm2",
  messages: [{ role: "user", content: "What is the weather in Paris?" }],
  tools: [weather],
  stream: true,
  options: { num_predict: 64 },
})) {
  last = part;
}
check(last?.done === true, "ollama-js tools while streaming");
const tags = await ollama.list();
check(tags.models.some((m) => m.name.startsWith("smollm2")), "ollama-js list");
