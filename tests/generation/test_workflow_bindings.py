"""Finding where each parameter goes: by node id, by title, by class, and refusing ambiguity."""

from __future__ import annotations

import pytest

from generation.workflow import BindingError, normalize_bindings, resolve_bindings, style_parameters
from generation.workflow.bindings import bindings_to_json


def _sampler(title: str, seed: int = 0) -> dict:
    return {
        "class_type": "KSampler",
        "inputs": {"seed": seed, "steps": 20, "model": ["4", 0]},
        "_meta": {"title": title},
    }


@pytest.fixture
def graph() -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "3": _sampler("Base pass"),
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
    }


def _node_of(graph, bindings, param="seed"):
    return [r.node_id for r in resolve_bindings(graph, bindings)[param]]


def test_bind_by_node_id(graph):
    assert _node_of(graph, {"seed": {"node": "3", "input": "seed"}}) == ["3"]


def test_bind_by_title(graph):
    assert _node_of(graph, {"prompt": {"title": "Positive", "input": "text"}}, "prompt") == ["6"]


def test_bind_by_class_when_it_is_unique(graph):
    assert _node_of(graph, {"seed": {"class": "KSampler", "input": "seed"}}) == ["3"]


def test_a_stale_id_falls_back_to_title_then_class(graph):
    # The user re-exported the graph and the sampler became node 12.
    graph["12"] = graph.pop("3")
    assert _node_of(graph, {"seed": {"node": "3", "title": "Base pass", "input": "seed"}}) == ["12"]
    assert _node_of(graph, {"seed": {"node": "3", "class": "KSampler", "input": "seed"}}) == ["12"]


def test_an_id_whose_class_differs_is_not_trusted(graph):
    # Node 6 exists but is a text encoder now; the class check sends resolution to the KSampler.
    assert _node_of(graph, {"seed": {"node": "6", "class": "KSampler", "input": "seed"}}) == ["3"]


def test_ambiguous_class_is_an_error_naming_the_candidates(graph):
    graph["10"] = _sampler("Hires pass")
    with pytest.raises(BindingError) as exc:
        resolve_bindings(graph, {"seed": {"class": "KSampler", "input": "seed"}})
    message = str(exc.value)
    assert "2 nodes are of class KSampler" in message
    assert "3 'Base pass'" in message
    assert "10 'Hires pass'" in message
    assert "bind by node id or title" in message


def test_ambiguous_class_is_fine_once_a_title_picks_one(graph):
    graph["10"] = _sampler("Hires pass")
    assert _node_of(graph, {"seed": {"title": "Hires pass", "class": "KSampler", "input": "seed"}}) == ["10"]


def test_duplicate_titles_are_an_error(graph):
    graph["10"] = _sampler("Base pass")
    with pytest.raises(BindingError, match="2 nodes are titled 'Base pass'"):
        resolve_bindings(graph, {"seed": {"title": "Base pass", "input": "seed"}})


def test_nothing_matching_is_an_error(graph):
    with pytest.raises(BindingError, match="no node matches node 99 or class KSamplerAdvanced"):
        resolve_bindings(graph, {"seed": {"node": "99", "class": "KSamplerAdvanced", "input": "noise_seed"}})


def test_a_misspelt_input_is_an_error_listing_the_real_ones(graph):
    with pytest.raises(BindingError) as exc:
        resolve_bindings(graph, {"seed": {"node": "3", "input": "sed"}})
    assert "has no input 'sed'" in str(exc.value)
    assert "seed, steps" in str(exc.value)


def test_binding_over_a_link_is_refused(graph):
    with pytest.raises(BindingError, match="is linked from node 4"):
        resolve_bindings(graph, {"checkpoint": {"node": "3", "input": "model"}})


def test_every_failure_is_reported_together(graph):
    with pytest.raises(BindingError) as exc:
        resolve_bindings(
            graph,
            {"seed": {"node": "3", "input": "sed"}, "prompt": {"title": "Nope", "input": "text"}},
        )
    assert len(exc.value.problems) == 2


@pytest.mark.parametrize(
    ("bindings", "fragment"),
    [
        ({"sead": {"node": "3", "input": "seed"}}, "unknown parameter 'sead'"),
        ({"seed": {"input": "seed"}}, "needs 'node', 'title' or 'class'"),
        ({"seed": {"node": "3"}}, "needs an 'input'"),
        ({"seed": {"node": "3", "input": "seed", "transform": "square"}}, "unknown transform 'square'"),
        ({"seed": {"node": "3", "input": "seed", "colour": 1}}, "unknown keys colour"),
        ({"seed": []}, "has no targets"),
        ({"seed": "3.seed"}, "each target must be an object"),
        ({"loras": {"node": "4", "input": "ckpt_name"}}, "drop 'input'"),
        ([], "bindings must be an object"),
        ({"seed": {"node": "3", "input": "seed", "style": True}}, "'seed' has no value in the project's style"),
        ({"steps": {"node": "3", "input": "steps", "style": "yes"}}, "'style' must be true or false"),
    ],
)
def test_malformed_bindings_are_refused(bindings, fragment):
    with pytest.raises(BindingError) as exc:
        normalize_bindings(bindings)
    assert fragment in str(exc.value)


def test_single_targets_and_integer_ids_are_normalised():
    normalized = normalize_bindings(
        {"seed": {"node": 3, "input": "seed"}, "loras": {"class": "CheckpointLoaderSimple"}}
    )
    assert normalized["seed"][0].node == "3"
    assert normalized["loras"][0].input is None
    assert normalized["loras"][0].clip_output == 1


def test_only_bindings_marked_style_follow_the_project_style():
    bindings = {
        "steps": [{"node": "3", "input": "steps", "style": True}],
        "seed": {"node": "3", "input": "seed"},
        "prompt": {"title": "Positive", "input": "text"},
    }
    assert style_parameters(bindings) == {"steps"}
    # The mark survives storing the normal form, and an unmarked target stores no mark.
    stored = bindings_to_json(normalize_bindings(bindings))
    assert stored["steps"] == [{"node": "3", "input": "steps", "style": True}]
    assert "style" not in stored["prompt"][0]
    assert style_parameters(stored) == {"steps"}
