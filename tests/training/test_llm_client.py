"""The LLM client against a fake OpenAI-compatible server on a real port."""

from __future__ import annotations

import base64
import socket

import pytest

from tests.factories import png_bytes
from tests.fakes.llm import FakeLLM, dominant_colour, fake_llm
from training.llm.client import LLMClient, LLMError, LLMUnavailable, image_data_url, parse_json_answer

__all__ = ["fake_llm"]


def test_a_question_about_an_image_carries_the_model_the_image_and_the_key():
    with (
        FakeLLM(model="llava:13b", api_key="sk-local", answer="a red square") as llm,
        LLMClient(llm.url, model="llava:13b", api_key="sk-local", timeout=5) as client,
    ):
        answer = client.ask_image("What is this?", png_bytes(64, 64, (220, 30, 30)), system="Be brief.")
    assert answer.content == "a red square" and answer.model == "llava:13b" and answer.finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0
    [request] = llm.requests
    assert request.body["model"] == "llava:13b" and request.body["temperature"] == 0
    assert request.headers["authorization"] == "Bearer sk-local"
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request.image_urls[0].startswith("data:image/png;base64,")
    assert dominant_colour(request.images[0]) == (220, 30, 30)
    assert "What is this?" in request.prompt


def test_large_images_are_sent_downscaled():
    url = image_data_url(png_bytes(3000, 1500, (10, 200, 10)), max_side=1024)
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.size == (1024, 512)


def test_a_wrong_model_is_an_error_with_the_servers_message():
    with (
        FakeLLM(model="llava") as llm,
        LLMClient(llm.url, model="gpt-9", timeout=5) as client,
        pytest.raises(LLMError, match="gpt-9") as caught,
    ):
        client.ask_image("?", png_bytes())
    assert not isinstance(caught.value, LLMUnavailable)
    assert llm.rejected and llm.rejected[0][0] == 404


def test_a_missing_key_is_refused():
    with (
        FakeLLM(api_key="sk-right") as llm,
        LLMClient(llm.url, model="llava", timeout=5) as client,
        pytest.raises(LLMError, match="401"),
    ):
        client.ask_image("?", png_bytes())


def test_server_errors_and_timeouts_mean_unavailable():
    with FakeLLM() as llm, LLMClient(llm.url, model="llava", timeout=1) as client:
        llm.mode = "error500"
        with pytest.raises(LLMUnavailable, match="500"):
            client.ask_image("?", png_bytes())
        llm.mode = "slow"
        with pytest.raises(LLMUnavailable, match="did not answer"):
            client.ask_image("?", png_bytes())


def test_an_unreachable_server_is_unavailable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        LLMClient(f"http://127.0.0.1:{port}/v1", model="llava", timeout=2) as client,
        pytest.raises(LLMUnavailable, match="cannot be reached"),
    ):
        client.ask_image("?", png_bytes())


def test_an_answer_that_is_not_a_completion_is_an_error():
    with FakeLLM() as llm, LLMClient(llm.url, model="llava", timeout=5) as client:
        llm.mode = "broken"
        with pytest.raises(LLMError, match="no choices"):
            client.ask_image("?", png_bytes())


def test_a_file_that_is_not_an_image_is_refused_before_sending():
    with (
        FakeLLM() as llm,
        LLMClient(llm.url, model="llava", timeout=5) as client,
        pytest.raises(LLMError, match="not PNG"),
    ):
        client.ask_image("?", b"hello, I am text")
    assert llm.requests == []


@pytest.mark.parametrize(
    "text",
    [
        '{"character": "Aiko", "confidence": 0.8}',
        'Sure!\n```json\n{"character": "Aiko", "confidence": 0.8}\n```',
        '```\n{"character": "Aiko", "confidence": 0.8}\n```',
        'The answer is {"character": "Aiko", "confidence": 0.8}. Hope it helps.',
    ],
)
def test_json_answers_are_read_with_or_without_fences(text):
    assert parse_json_answer(text) == {"character": "Aiko", "confidence": 0.8}


def test_prose_is_not_json():
    with pytest.raises(LLMError, match="did not answer with JSON"):
        parse_json_answer("I think this is Aiko, probably.")


def test_no_base_url_means_no_client(settings):
    settings.TOWER_LLM_BASE_URL = ""
    assert LLMClient.from_settings() is None


def test_the_settings_client_talks_to_the_configured_server(fake_llm):
    fake_llm.answer = "ok"
    client = LLMClient.from_settings()
    assert client is not None
    with client:
        assert client.ask_image("?", png_bytes()).content == "ok"
