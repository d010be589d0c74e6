"""A vision-language model (a GGUF and its mmproj) through llama.cpp's multimodal library
(``libmtmd``, via llama-cpp-python's ``MTMDChatHandler``): a chat model that reads images
(OpenAI ``image_url`` data URLs, Ollama ``images``) and the describer of the moderation plugin.
One object serves both, so both run on one worker thread, one request at a time."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance import (
    BadRequest,
    ChatModel,
    ChatRequest,
    CompletionRequest,
    GenerationChunk,
    ImageDescriber,
    ImageInput,
    ModelInfo,
    Usage,
)


class LlamaVisionModel(ChatModel, ImageDescriber):
    def __init__(
        self,
        info: ModelInfo,
        paths_for_load: Callable[[], tuple[Path, Path]],
        n_ctx: int,
        n_threads: int,
    ) -> None:
        self.info = info
        self._paths_for_load = paths_for_load
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.llm: Any = None

    @property
    def loaded(self) -> bool:
        return self.llm is not None

    @property
    def devices(self) -> tuple[str, ...]:
        return ("cpu",) if self.llm is not None else ()

    def load(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import MTMDChatHandler

        model, projector = self._paths_for_load()
        handler = MTMDChatHandler(clip_model_path=str(projector), verbose=False)
        self.llm = Llama(
            str(model),
            chat_handler=handler,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            verbose=False,
        )

    def unload(self) -> None:
        self.llm = None

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        sampling = request.sampling
        stream = self.llm.create_chat_completion(
            messages=request.messages,
            stream=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(sampling.stop),
            response_format=request.response_format,
        )
        produced, finish = 0, "stop"
        for chunk in stream:
            if cancel.is_set():
                finish = "cancelled"
                break
            choice = chunk["choices"][0]
            text = choice["delta"].get("content") or ""
            if text:
                produced += 1
                yield GenerationChunk(text=text)
            finish = choice.get("finish_reason") or finish
        prompt = max(0, int(self.llm.n_tokens) - produced)
        yield GenerationChunk(finish_reason=finish, usage=Usage(prompt, produced))

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        raise BadRequest(f"model '{self.name}' answers chats; use /v1/chat/completions")

    def describe(self, image: ImageInput, prompt: str, max_tokens: int = 256) -> str:
        url = "data:image/png;base64," + base64.b64encode(image.png).decode()
        message = {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": prompt},
            ],
        }
        out = self.llm.create_chat_completion(
            messages=[message], max_tokens=max_tokens, temperature=0.0
        )
        return str(out["choices"][0]["message"]["content"] or "")
