"""Recognising API-format graphs, and refusing everything else with a useful sentence."""

from __future__ import annotations

import json

import pytest

from generation.workflow import GraphFormatError, parse_graph, required_nodes, validate_graph

GOOD = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}

# What ComfyUI's Save menu writes (trimmed): nodes + links + widgets_values, no class_type keys.
UI_EXPORT = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {"id": 3, "type": "KSampler", "widgets_values": [156680208700286, "randomize", 20, 8, "euler"]},
        {"id": 9, "type": "SaveImage", "widgets_values": ["ComfyUI"]},
    ],
    "links": [[9, 8, 0, 9, 0, "IMAGE"]],
    "groups": [],
    "version": 0.4,
}


def test_ui_format_is_refused_with_how_to_export_the_api_format():
    with pytest.raises(GraphFormatError) as exc:
        parse_graph(UI_EXPORT)
    message = str(exc.value)
    assert "UI workflow" in message
    assert "dev mode" in message
    assert "Export (API)" in message


def test_ui_format_given_as_text_is_refused_the_same_way():
    with pytest.raises(GraphFormatError, match=r"Export \(API\)"):
        parse_graph(json.dumps(UI_EXPORT))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "not a list"),
        ("42", "not a int"),
        ({}, "has no nodes"),
        ({"1": {"inputs": {}}}, "node 1: has no class_type"),
        ({"1": {"class_type": "", "inputs": {}}}, "node 1: has no class_type"),
        ({"1": "EmptyImage"}, "node 1: must be an object"),
        ({"1": {"class_type": "EmptyImage", "inputs": []}}, "'inputs' must be an object"),
        (
            {"2": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}},
            "links to node 99, which is not in the workflow",
        ),
        (
            {**GOOD, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0, 1]}}},
            "is a list but not a link",
        ),
        (
            {**GOOD, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", -1]}}},
            "bad output index -1",
        ),
    ],
)
def test_junk_is_refused_with_a_clear_message(raw, fragment):
    with pytest.raises(GraphFormatError) as exc:
        parse_graph(raw)
    assert fragment in str(exc.value)


def test_every_problem_is_listed_not_just_the_first():
    graph = {
        "1": {"inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["7", 0]}},
    }
    with pytest.raises(GraphFormatError) as exc:
        validate_graph(graph)
    assert len(exc.value.problems) == 2


def test_a_cycle_is_refused_and_named():
    graph = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    with pytest.raises(GraphFormatError, match="cycle: 1 → 2 → 1"):
        validate_graph(graph)


def test_valid_graph_parses_from_text_or_dict_unchanged():
    assert parse_graph(json.dumps(GOOD)) == GOOD
    assert parse_graph(GOOD) is GOOD


def test_a_prompt_request_body_is_unwrapped():
    body = {"prompt": GOOD, "client_id": "abc", "prompt_id": 12345}
    assert parse_graph(body) == GOOD


def test_a_node_named_prompt_is_not_mistaken_for_a_request_body():
    graph = {"prompt": {"class_type": "EmptyImage", "inputs": {}}}
    assert parse_graph(graph) == graph


def test_required_nodes_are_sorted_and_unique():
    graph = {**GOOD, "3": {"class_type": "EmptyImage", "inputs": {}}}
    assert required_nodes(graph) == ["EmptyImage", "SaveImage"]
