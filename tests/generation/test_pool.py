from __future__ import annotations

from generation.pool import BackendState, choose_backend


def state(id: int, **kw) -> BackendState:
    base = dict(
        name=f"gpu-{id}",
        enabled=True,
        healthy=True,
        in_flight=0,
        max_in_flight=2,
        vram_used_fraction=0.2,
        vram_hold=0.8,
        node_classes=frozenset({"KSampler", "SaveImage"}),
        last_checkpoint="",
        last_used=0.0,
    )
    base.update(kw)
    return BackendState(id=id, **base)


def test_prefers_the_backend_that_holds_the_checkpoint_even_if_busier():
    states = [state(1, last_checkpoint="b.safetensors"), state(2, in_flight=1, last_checkpoint="a.safetensors")]
    choice = choose_backend(states, required_nodes=["KSampler"], checkpoint="a.safetensors")
    assert choice.backend_id == 2
    assert choice.reason == "same checkpoint loaded"


def test_without_affinity_the_least_busy_then_least_recently_used_wins():
    states = [state(1, in_flight=1), state(2, last_used=5.0), state(3, last_used=1.0)]
    assert choose_backend(states, required_nodes=[], checkpoint="x").backend_id == 3


def test_full_backends_and_hot_vram_hold_work():
    assert choose_backend([state(1, in_flight=2)], required_nodes=[]).reason == "no free slot on gpu-1"
    held = choose_backend([state(1, vram_used_fraction=0.93)], required_nodes=[])
    assert held.backend_id is None
    assert "VRAM" in held.reason
    # Unknown VRAM (a CPU-only server reports none) does not hold work.
    assert choose_backend([state(1, vram_used_fraction=None)], required_nodes=[]).backend_id == 1


def test_capability_and_health_explain_why_nothing_fits():
    choice = choose_backend([state(1), state(2, healthy=False)], required_nodes=["ADE_AnimateDiffLoaderGen1"])
    assert choice.backend_id is None
    assert "gpu-1 lacks ADE_AnimateDiffLoaderGen1" in choice.reason
    assert choose_backend([state(1, healthy=False)], required_nodes=[]).reason == "no ComfyUI backend is reachable"
    assert choose_backend([state(1, enabled=False)], required_nodes=[]).reason == "no enabled ComfyUI backend"
    assert choose_backend([], required_nodes=[]).backend_id is None
