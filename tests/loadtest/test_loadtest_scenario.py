"""Scenario files: the reference scenarios parse, and every error names the field at fault."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from loadtest.__main__ import SCENARIOS_DIR, apply_overrides, main, resolve_scenario_path
from loadtest.gateway_config import gateway_config
from loadtest.scenario import ScenarioError, load_scenario, parse_scenario

MINIMAL: dict[str, Any] = {
    "providers": {
        "primary": {"kind": "openai", "price": {"input_per_mtok": 1, "output_per_mtok": 2},
                    "profile": {"ttft": {"median_ms": 100, "sigma": 1.0}}, "breaker": {"fail_max": 3}},
        "secondary": {"kind": "anthropic"},
    },
    "policies": {"no-hedge": {"hedge": "off"}, "fixed": {"hedge": {"delay_ms": 200}}},
}


def _with(path: str, value: object) -> dict[str, Any]:
    """MINIMAL with the dotted `path` set to `value`."""
    data = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


@pytest.mark.parametrize("name", ["heavy-tail", "outage", "overload", "tiny"])
def test_reference_scenarios_parse(name: str) -> None:
    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml")
    assert scenario.name == name
    assert len(scenario.providers) >= 2
    assert {p.kind for p in scenario.providers} == {"openai", "anthropic"}  # both wire formats upstream
    assert scenario.baseline == "no-hedge"


def test_three_clouds_scenario_is_the_same_model_on_three_cloud_kinds() -> None:
    scenario = load_scenario(SCENARIOS_DIR / "three-clouds.yaml")
    assert [p.kind for p in scenario.providers] == ["anthropic", "bedrock", "vertex"]
    assert len({(p.price.input_per_mtok, p.price.output_per_mtok) for p in scenario.providers}) == 1
    # The clouds' simulators check the credentials the gateway is given.
    assert scenario.provider("bedrock").profile["require_key"].startswith("AKID")
    with tempfile.TemporaryDirectory() as files:
        config = parse_config(gateway_config(scenario.providers, scenario.policies[0], scenario.alias,
                                             {p.name: "http://127.0.0.1:9" for p in scenario.providers}, 1, "",
                                             Path(files)), {})
    assert config.providers["vertex"].base_url == "http://127.0.0.1:9/v1"


def test_minimal_scenario_defaults() -> None:
    scenario = parse_scenario(MINIMAL, default_name="mini")
    assert scenario.name == "mini"
    assert scenario.alias == "chat"
    assert [p.name for p in scenario.providers] == ["primary", "secondary"]
    assert scenario.baseline == "no-hedge"  # the first policy with hedging off
    assert scenario.providers[0].gateway == {"breaker": {"fail_max": 3}}
    assert scenario.providers[0].seed != scenario.providers[1].seed
    assert scenario.policy_deadline_s() > scenario.traffic.duration_s + scenario.traffic.request_timeout_s


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    ("traffic.rate", 0, "traffic.rate", "must be > 0"),
    ("traffic.stream_share", 1.5, "traffic.stream_share", "must be <= 1"),
    ("traffic.prompt_tokens", [50, 10], "traffic.prompt_tokens[1]", "must be >= 50"),
    ("traffic.speed", 3, "traffic.speed", "unknown key"),
    ("providers.primary.kind", "grpc", "providers.primary.kind", "openai, anthropic, azure-openai, bedrock, vertex"),
    ("providers.primary.profile", {"ttft": {"median_ms": 100, "sigma": -1}}, "providers.primary.profile.ttft.sigma",
     "must be >= 0"),
    ("providers.primary.profile", {"stall_prob": 2}, "providers.primary.profile.stall_prob", "between 0 and 1"),
    ("providers.primary.price", {"per_token": 1}, "providers.primary.price.per_token", "unknown key"),
    ("providers.primary.breaker", {"fail_max": 0}, "providers.primary.breaker.fail_max", "must be >= 1"),
    ("policies.fixed", {"hedge": {"delay_ms": -5}}, "policies.fixed.hedge.delay_ms", "must be >= 0"),
    ("policies.fixed", {"hedge": {"delay_ms": "p150"}}, "policies.fixed.hedge.delay_ms", ""),
    ("policies.fixed", {"retries": 3}, "policies.fixed.retries", "unknown key"),
    ("policies.fixed", {"targets": ["nobody"]}, "policies.fixed.targets", "provider names"),
    ("baseline", "fastest", "baseline", "unknown policy"),
    ("changes", [{"at_s": 1, "provider": "tertiary", "profile": {}}], "changes[0].provider", "unknown provider"),
    ("changes", [{"at_s": 1, "provider": "primary", "profile": {"ttft": "slow"}}], "changes[0].profile.ttft", ""),
    ("name", "a/b", "name", "output folder"),
    ("colour", "blue", "colour", "unknown key"),
])
def test_errors_name_the_field(path: str, value: object, field: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_with(path, value))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in str(info.value)


def test_missing_sections_are_named() -> None:
    with pytest.raises(ScenarioError, match=r"^providers: is required"):
        parse_scenario({"policies": MINIMAL["policies"]})
    with pytest.raises(ScenarioError, match=r"^policies: is required"):
        parse_scenario({"providers": MINIMAL["providers"]})
    with pytest.raises(ScenarioError, match=r"^providers.secondary.kind: "):
        parse_scenario(_with("providers.secondary", {}))


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)


def test_changes_merge_onto_the_providers_profile_and_are_sorted() -> None:
    data = _with("changes", [{"at_s": 9, "provider": "primary", "profile": {}},
                             {"at_s": 3, "provider": "primary", "profile": {"ttft": 900}}])
    scenario = parse_scenario(data)
    assert [c.at_s for c in scenario.changes] == [3, 9]
    assert scenario.changes[0].profile == {"ttft": 900}
    assert scenario.changes[1].profile == MINIMAL["providers"]["primary"]["profile"]


def test_generated_gateway_config() -> None:
    scenario = parse_scenario(_with("policies.swapped", {"targets": ["secondary", "primary"], "hedge": "off"}))
    urls = {"primary": "http://127.0.0.1:1001", "secondary": "http://127.0.0.1:1002"}
    by_name = {p.name: p for p in scenario.policies}
    config = gateway_config(scenario.providers, by_name["fixed"], "chat", urls, 8080, "/tmp/t.jsonl")
    assert config["providers"]["primary"]["base_url"] == "http://127.0.0.1:1001/v1"  # OpenAI SDK style
    assert config["providers"]["secondary"]["base_url"] == "http://127.0.0.1:1002"  # Anthropic SDK style
    assert config["providers"]["primary"]["breaker"] == {"fail_max": 3}
    route = config["models"]["chat"]
    assert [t["provider"] for t in route["targets"]] == ["primary", "secondary"]
    assert route["targets"][0]["price"] == {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    assert route["hedge"] == {"delay_ms": 200}
    swapped = gateway_config(scenario.providers, by_name["swapped"], "chat", urls, 8080, "")
    assert [t["provider"] for t in swapped["models"]["chat"]["targets"]] == ["secondary", "primary"]


def test_command_line_overrides_and_names() -> None:
    assert resolve_scenario_path("tiny") == SCENARIOS_DIR / "tiny.yaml"
    scenario = apply_overrides(parse_scenario(MINIMAL), duration_s=3.0, rate=7.0, policies=["fixed"])
    assert (scenario.traffic.duration_s, scenario.traffic.rate) == (3.0, 7.0)
    assert [p.name for p in scenario.policies] == ["fixed"]
    assert scenario.baseline is None  # the baseline was not selected: extra cost is measured against winners
    with pytest.raises(ScenarioError, match=r"^--policy: unknown policy 'nope'"):
        apply_overrides(parse_scenario(MINIMAL), duration_s=None, rate=None, policies=["nope"])


def test_cli_reports_scenario_errors_with_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("providers: {p: {kind: openai}}\npolicies: {a: {hedge: off}}\ntraffic: {rate: -1}\n")
    assert main([str(path)]) == 2
    assert "scenario error: traffic.rate: must be > 0" in capsys.readouterr().err
