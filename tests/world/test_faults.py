"""world_faults: fates are pure and seeded, mixes parse from text, bad text names the fix."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from openimages_pipe.world.faults import (
    ALL_PRESET,
    INJECTABLE,
    Fault,
    FaultSpec,
    describe,
    fate,
    is_transient,
    parse_fault_spec,
)

IDS = [f"{i:016x}" for i in range(20_000)]


def test_fate_is_deterministic_for_seed_and_id() -> None:
    spec = parse_fault_spec("all")
    first = [fate(7, image_id, spec) for image_id in IDS[:500]]
    again = [fate(7, image_id, spec) for image_id in IDS[:500]]
    assert first == again
    assert len(set(first)) == len(Fault)  # 500 draws from 16 equal shares meet every fault


def test_fate_differs_across_seeds() -> None:
    spec = parse_fault_spec("all")
    differing = sum(fate(1, i, spec) != fate(2, i, spec) for i in IDS[:1000])
    # Two independent draws from 16 equal shares agree 1/16 of the time.
    assert differing > 900


def test_fate_follows_the_documented_hash_and_order() -> None:
    spec = parse_fault_spec("404=0.5,410=0.5")
    for image_id in IDS[:300]:
        digest = hashlib.blake2b(f"3:{image_id}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        assert fate(3, image_id, spec) is (Fault.HTTP_404 if u < 0.5 else Fault.HTTP_410)


@pytest.mark.parametrize("text", ["all", "flickr", "404=0.05,placeholder=0.02,429=0.01,reset=0.2"])
def test_fate_proportions_match_the_spec(text: str) -> None:
    spec = parse_fault_spec(text)
    counts = Counter(fate(11, image_id, spec) for image_id in IDS)
    for fault in Fault:
        p = spec.probability(fault)
        sigma = (p * (1 - p) / len(IDS)) ** 0.5
        share = counts[fault] / len(IDS)
        assert abs(share - p) <= 5 * sigma + 1e-4, (fault, share, p)


def test_spec_without_faults_keeps_every_image() -> None:
    spec = parse_fault_spec("none")
    assert spec.probabilities == {}
    assert {fate(0, image_id, spec) for image_id in IDS[:1000]} == {Fault.NONE}


def test_probability_one_fates_every_image() -> None:
    spec = parse_fault_spec("truncated=1")
    assert {fate(5, image_id, spec) for image_id in IDS[:1000]} == {Fault.TRUNCATED}


def test_transient_and_permanent_faults() -> None:
    transient = {f for f in Fault if is_transient(f)}
    assert transient == {
        Fault.HTTP_429,
        Fault.HTTP_500,
        Fault.HTTP_503,
        Fault.RESET,
        Fault.STALL,
        Fault.TRUNCATED,
        Fault.SLOW_FIRST_BYTE,
    }
    assert not is_transient(Fault.NONE)


def test_flickr_preset_is_about_eight_percent_dead() -> None:
    spec = parse_fault_spec("flickr")
    dead = sum(p for f, p in spec.probabilities.items() if not is_transient(f))
    transient = sum(p for f, p in spec.probabilities.items() if is_transient(f))
    assert 0.06 <= dead <= 0.10
    assert 0.01 <= transient <= 0.06
    assert max(spec.probabilities, key=spec.probabilities.__getitem__) is Fault.HTTP_404


def test_all_preset_has_every_fault_and_some_healthy() -> None:
    spec = parse_fault_spec("all")
    assert set(spec.probabilities) == set(INJECTABLE)
    assert len(set(ALL_PRESET.values())) == 1
    assert spec.probability(Fault.NONE) > 0.05


def test_explicit_faults_and_parameters() -> None:
    text = "404=0.05,placeholder=0.02,429=0.01,transient=3,slow=0.5,stall=0.25,retry_after=4"
    spec = parse_fault_spec(text + ",huge_mb=2")
    assert spec.probabilities == {
        Fault.HTTP_404: 0.05,
        Fault.PLACEHOLDER: 0.02,
        Fault.HTTP_429: 0.01,
    }
    assert spec.transient_failures == 3
    assert spec.slow_seconds == 0.5
    assert spec.stall_seconds == 0.25
    assert spec.retry_after == 4
    assert spec.huge_bytes == 2 * 1024 * 1024


def test_defaults() -> None:
    spec = parse_fault_spec("404=0.1")
    assert (spec.transient_failures, spec.slow_seconds, spec.stall_seconds) == (2, 3.0, 3.0)
    assert spec.retry_after == 1
    assert spec.huge_bytes == 512 * 1024 * 1024


def test_preset_with_overrides_left_to_right() -> None:
    spec = parse_fault_spec(" flickr , 404=0.1, 503=0 ")
    assert spec.probabilities[Fault.HTTP_404] == 0.1
    assert Fault.HTTP_503 not in spec.probabilities
    assert (
        spec.probabilities[Fault.HTTP_410]
        == parse_fault_spec("flickr").probabilities[Fault.HTTP_410]
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus", "'bogus'"),
        ("404=0.1,405=0.1", "'405=0.1'"),
        ("flickr,stall", "'stall'"),
        ("none=0.5", "'none=0.5'"),
    ],
)
def test_unknown_tokens_are_named_with_the_valid_names(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="valid") as info:
        parse_fault_spec(text)
    message = str(info.value)
    assert named in message
    for valid in ("flickr", "all", "404", "placeholder", "redirect_loop", "transient=", "slow="):
        assert valid in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("404=abc", "'404=abc'"),
        ("transient=2.5", "'transient=2.5'"),
        ("404=2", "404"),
        ("404=-0.1", "404"),
        ("404=0.6,410=0.6", "1.2000"),
        ("transient=-1", "transient"),
        ("slow=-1", "slow"),
    ],
)
def test_bad_values_are_named(text: str, named: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fault_spec(text)
    assert named in str(info.value)


def test_spec_refuses_a_probability_for_none() -> None:
    with pytest.raises(ValueError, match="NONE"):
        FaultSpec(probabilities={Fault.NONE: 0.5})


def test_describe_shows_the_mix_and_timings() -> None:
    line = describe(parse_fault_spec("404=0.05,transient=3,slow=0.5"))
    assert "404=5.00%" in line
    assert "healthy 95.00%" in line
    assert "first 3 requests" in line
    assert "slow=0.5s" in line
