"""Config schema: the shipped configs pass; bad keys and values fail naming the key."""

import copy

import pytest
import yaml

from ecrflow.config import validate_config
from ecrflow.errors import ConfigError

from conftest import REPO


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def paper():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_configs_are_valid(paper):
    def over(name):
        return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())

    validate_config(paper)
    for merged in (["toy"], ["reference"], ["real_sample"], ["real_sample", "real_models"],
                   ["real_sample", "real_judges"], ["real_sample", "real_generator"],
                   ["real_sample", "real_models", "real_generator", "real_judges"]):
        cfg = paper
        for name in merged:
            cfg = _merge(cfg, over(name))
        validate_config(cfg)
    real = _merge(paper, over("real_sample"))["variants"]["recommend"]
    # Every row of the real-sample tables scored alike (README, 'The real sample').
    assert all(v["popularity_prior"] and v["kg_copy"] for v in real.values())
    assert not any(v.get("kg_copy") for v in paper["variants"]["recommend"].values())
    # The real sample has no reviews: its generators train on the dialogues, judged from the digit
    # distribution with the calibration rows; the paper's run keeps the reviews and the listwise judge.
    sample = _merge(paper, over("real_sample"))
    assert sample["data"]["reviews"] is None and sample["generation"]["corpus"] == "dialogues"
    assert sample["judge"]["scoring"] == "expected" and sample["judge"]["calibration"]
    assert paper["generation"]["corpus"] == "reviews" and paper["judge"]["scoring"] == "listwise"


def test_paper_hyperparameters(paper):
    # ECR_SPEC 5: the README flags of the reference, and the paper's feedback weights.
    assert paper["recommend"]["batch_size"] * paper["recommend"]["grad_accum"] == 128
    assert paper["recommend"]["feedback_weights"] == {"like": 2.0, "dislike": 1.0, "not_said": 0.5}
    assert paper["pretrain"]["lr"] == 5e-4 and paper["cooccurrence"]["top_n_labels"] == 3


@pytest.mark.parametrize("path, value, expected", [
    (("recommend", "learning_rate"), 1e-4, "recommend.learning_rate: unknown key"),
    (("cooccurence",), {}, "cooccurence: unknown key"),
    (("emotion", "turn_merge"), "sum", "emotion.turn_merge: 'sum' is not one of"),
    (("recommend", "lr"), "fast", "recommend.lr: 'fast' is not of type 'number'"),
    # YAML 1.1 reads 1e-3 as a string: the message says so and how to write it
    (("recommend", "lr"), "1e-3", "recommend.lr: '1e-3' is not of type 'number' (YAML reads 1e-3 as a string: write "
                                  "it with a decimal point and a signed exponent, 1.0e-3)"),
    (("toy", "n_dialogs", "train"), 0, "toy.n_dialogs.train: 0 is less than the minimum of 1"),
    (("resources", "pretrain", "gpus"), -1, "resources.pretrain.gpus"),
])
def test_bad_key_or_value_names_the_key(paper, path, value, expected):
    node = paper
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        validate_config(paper)
    assert expected in str(err.value)


def test_missing_key_and_pattern_without_split(paper):
    del paper["kg"]["reverse"]
    with pytest.raises(ConfigError, match="'reverse' is a required property"):
        validate_config(paper)
    paper["kg"]["reverse"] = "shared"
    paper["data"]["dialog_pattern"] = "train.jsonl"
    with pytest.raises(ConfigError, match="data.dialog_pattern: must contain '{split}'"):
        validate_config(paper)


@pytest.mark.parametrize("change, expected", [
    ({"rl": {"kind": "gpt2"}}, "rl.kind: 'gpt2' is not in generation.kinds"),
    ({"judge": {"judges": [{"name": "a", "llm": {"kind": "lexicon"}}, {"name": "a", "llm": {"kind": "smollm2"}}]}},
     "judge.judges: names must be unique, a repeated"),
    ({"judge": {"judges": []}}, "rl.kind: the RL stage rewards with the critic"),
    ({"judge": {"baselines": [{"name": "x", "paper_row": "GPT-5", "llm": {"kind": "smollm2"}}]}},
     "judge.baselines.x.paper_row: 'GPT-5' is not a Table 2 row"),
    ({"judge": {"judges": [{"name": "Bad Name", "llm": {"kind": "lexicon"}}]}}, "judge.judges.0.name"),
    ({"rl": {"reward_weights": {"empathy": 1}}}, "rl.reward_weights.empathy: unknown key"),
    ({"rl": {"reward_weights": {"emo_int": 0}}}, "rl.reward_weights: at least one weight must be positive"),
    ({"judge": {"scoring": "expected", "judges": [{"name": "lex", "llm": {"kind": "lexicon"}}]}},
     "judge.judges.lex.scoring: the lexicon judge counts words"),
    ({"generation": {"corpus": "tweets"}}, "generation.corpus"),
    ({"rl": {"best_of_n": 1}}, "rl.best_of_n"),
    ({"critic": {"judges": ["gpt5"]}}, "critic.judges: gpt5 not in judge.judges"),
])
def test_judge_and_rl_settings_are_checked(paper, change, expected):
    if "reward_weights" in change.get("rl", {}):
        paper["rl"]["reward_weights"] = {}
    with pytest.raises(ConfigError) as err:
        validate_config(_merge(paper, change))
    assert expected in str(err.value)


def test_copy_without_global_entities_is_refused_naming_the_variant(paper):
    cfg = copy.deepcopy(paper)
    cfg["variants"]["recommend"]["ecr_l"]["copy"] = True
    with pytest.raises(ConfigError, match=r"variants\.recommend\.ecr_l\.copy: .*global_entities"):
        validate_config(cfg)
    cfg["variants"]["recommend"]["ecr_l"]["copy"] = False
    cfg["variants"]["recommend"]["ecr"]["copy"] = True
    validate_config(cfg)


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "over.yaml"
    bad.write_text("recommend:\n  lr: [1\n  epochs: 2\n")
    base = str(REPO / "config" / "config.yaml")
    proc = subprocess.run([sys.executable, "-m", "ecrflow.cli", "check", "--base", base, "--configfile",
                           str(REPO / "config" / "toy.yaml"), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"ecrflow check: {bad}, line 3, column 9: not valid YAML (expected ',' or ']', "
                                   "but got ':')")
    bad.write_text("recommend:\n  lr: 1e-3\n")
    proc = subprocess.run([sys.executable, "-m", "ecrflow.cli", "check", "--base", base, "--configfile", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "recommend.lr: '1e-3' is not of type 'number' (YAML reads 1e-3" in proc.stderr
    bad.write_text("recommend:\n  lr: 1.0e-3\n")
    proc = subprocess.run([sys.executable, "-m", "ecrflow.cli", "check", "--base", base, "--configfile", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "config valid: run paper" in proc.stdout
