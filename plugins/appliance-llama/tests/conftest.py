"""A live test server with the real default models from the test model store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

from appliance.app import create_app
from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from tests.fixtures import make_settings

if TYPE_CHECKING:
    from appliance_llama.sequence import Sequence

REPO = Path(__file__).resolve().parents[3]
MODELS_DIR = REPO / ".cache" / "models"
CHAT = "smollm2:135m"
Scope = Literal["function", "module"]
EMBED = "all-minilm:l6-v2"


def default_chat_engine(slots: int) -> Any:
    """The default chat model in a batched engine of its own (no server), 2,048-token pool."""
    from appliance_llama.engine import LlamaEngine

    require_default_models()
    catalog = load_catalog()
    path = ModelStore(MODELS_DIR, catalog).verified_path(catalog.get(CHAT))
    return LlamaEngine(path, pool_tokens=2048, slots=slots, n_threads=2)


def engine_fixture(slots: int, scope: Scope = "function") -> Any:
    """A test file's ``engine`` fixture: ``engine = engine_fixture(4)``."""

    @pytest.fixture(scope=scope, name="engine")
    def fixture() -> Iterator[Any]:
        engine = default_chat_engine(slots)
        yield engine
        engine.close()

    return fixture


def greedy_sequence(engine: Any, text: str, max_tokens: int) -> Sequence:
    """A temperature-0 sequence for ``engine`` from a prompt already in the chat template."""
    from appliance_llama.sequence import Sequence

    from appliance import SamplingOptions

    prompt = engine.tokenize(text, add_bos=False, special=True)
    return Sequence(prompt, SamplingOptions(temperature=0, max_tokens=max_tokens), limit=1024)


async def batched_client(aiohttp_client: Any, home: Path, **overrides: Any) -> Any:
    """A live server of the default chat model with four slots (``overrides``: settings)."""
    require_default_models()
    values: dict[str, Any] = {
        "load_plugins": ("llama",),
        "models_dir": MODELS_DIR,
        "n_threads": 2,
        "chat_ctx": 1024,
        "parallel": 4,
        **overrides,
    }
    return await aiohttp_client(
        create_app(make_settings(home, **values)), server_kwargs={"handler_cancellation": True}
    )


def require_default_models() -> None:
    store = ModelStore(MODELS_DIR, load_catalog())
    missing = [m.id for m in load_catalog().defaults() if not store.has(m)]
    if missing:
        pytest.fail(
            f"default models {missing} are not in {MODELS_DIR}; `make test` fetches them "
            "(or run `.venv/bin/appliance models fetch --default --models-dir .cache/models`)"
        )


@pytest.fixture
async def llama_client(aiohttp_client: Any, home: Path) -> TestClient:  # type: ignore[type-arg]
    require_default_models()
    settings = make_settings(
        home, load_plugins=("llama",), models_dir=MODELS_DIR, n_threads=2, chat_ctx=1024
    )
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def openai_client(llama_client: TestClient) -> AsyncIterator[AsyncOpenAI]:  # type: ignore[type-arg]
    client = AsyncOpenAI(
        base_url=str(llama_client.make_url("/v1")), api_key="unused", max_retries=0
    )
    yield client
    await client.close()
