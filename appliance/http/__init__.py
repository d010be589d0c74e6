"""The HTTP surface: middleware, the OpenAI, Ollama and appliance APIs."""
