"""A paper's claims, declared in its table file and decided from the records (docs/tables.md,
"Claims", holds the rule in full).

A table file's `claims:` is a list; each claim compares two kinds of rows of the table:

    - name: pruned                       # a word, unique in the table
      says: after 50% pruning ..., StochGradAdam keeps more accuracy than Adam
      cite: Yun 2024 (arXiv 2312.16020), ...   # where the paper says so (also in docs/methods/)
      column: acc_p50                    # a measured column of the table
      a: {optimizer: sga}                # side a: row key -> a value or a list of allowed values
      b: {optimizer: adam}               # side b; the keys both sides name are the compared keys
      relation: greater                  # a > b; at_least: a >= b - margin; comparable: |a - b| <= margin
      margin: 0.5                        # at_least (tolerance, default 0) and comparable (required)
      by: 90                             # greater only: a > b + by (default 0)
      reason: ...                        # why the margin or `by` (required with either)
      condition: {column: flops_pct, relation: comparable, margin: 2, reason: ...}   # optional

One line per pair of comparable rows: a row of side a and a row of side b whose semantic configs
agree in every key but the compared ones (keys of a compared component that only one side has,
such as StochGradAdam's sampling rate, are not compared). Each line is decided with a 95%
interval of the difference a - b (report/stats.py: paired by seed where the sides share seeds,
else Welch) and says holds, contradicted, or not resolved at n = k; a condition is decided the
same way, and a line holds only when its condition holds too. A line's setting is the paper's
when both rows are in it, else the budget of the grid file its rows came from
(report/budgets.py), else "other runs"; its rows' data label and epochs are always named.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from ..errors import suggest
from .budgets import budget_of
from .cells import IMPLICIT_KEYS, PAPER, key_text, natural_key
from .stats import LEVEL, Interval, difference_interval, mean_std

RELATIONS = ("greater", "at_least", "comparable")
CLAIM_KEYS = ("name", "says", "cite", "column", "a", "b", "relation", "margin", "by", "reason", "condition")
REQUIRED = ("name", "says", "cite", "column", "a", "b", "relation")
CONDITION_KEYS = ("column", "relation", "margin", "by", "reason")
HOLDS, CONTRADICTED, UNRESOLVED = "holds", "contradicted", "not resolved"
PAPER_SETTING = "paper's setting"
OTHER_RUNS = "other runs"
NO_RUNS = "no runs on either side"
RULE = (f"Each line: each side's mean ± std over its seeds (n), the difference a − b with its "
        f"{LEVEL:.0%} interval (Student t; paired by seed where the two sides share seeds, else Welch), "
        "and the verdict (docs/tables.md, \"Claims\"). Lines outside the paper's setting name their "
        "budget and are no test of the paper's numbers.")


# ----------------------------------------------------------------------------- the declaration


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def allowed(selection) -> list:
    return selection if isinstance(selection, list) else [selection]


def compared_keys(claim: dict) -> list[str]:
    """The row keys both sides name: what the claim compares (optimizer, decay, method, ...)."""
    return [key for key in claim["a"] if key in claim["b"]]


def claim_problems(spec: dict, table: str) -> list[str]:
    """One line per problem of the table's `claims:` (empty: none, or no claims)."""
    claims = spec.get("claims")
    if claims is None:
        return []
    if not isinstance(claims, list):
        return [f"table {table}: claims: a list of claims (each a map with {', '.join(REQUIRED)})"]
    problems, names = [], []
    for index, claim in enumerate(claims):
        where = f"table {table}: claims[{index}]"
        if not isinstance(claim, dict):
            problems.append(f"{where}: a map with {', '.join(REQUIRED)}")
            continue
        if isinstance(claim.get("name"), str) and claim["name"]:
            where = f"table {table}: claims.{claim['name']}"
        problems += unknown_keys(claim, CLAIM_KEYS, where)
        problems += [f"{where}: '{key}' is missing" for key in REQUIRED if key not in claim]
        problems += [f"{where}.{key}: text, not {claim[key]!r}" for key in ("name", "says", "cite")
                     if key in claim and not (isinstance(claim[key], str) and claim[key].strip())]
        if claim.get("name") in names:
            problems.append(f"{where}.name: two claims are named '{claim['name']}'")
        names.append(claim.get("name"))
        problems += test_problems(claim, spec, where)
        problems += selection_problems(claim, spec, where)
        if "condition" in claim:
            condition = claim["condition"]
            if not isinstance(condition, dict):
                problems.append(f"{where}.condition: a map with column, relation (and margin or by, reason)")
                continue
            problems += unknown_keys(condition, CONDITION_KEYS, f"{where}.condition")
            problems += [f"{where}.condition: '{key}' is missing" for key in ("column", "relation")
                         if key not in condition]
            problems += test_problems(condition, spec, f"{where}.condition")
    return problems


def unknown_keys(section: dict, known: tuple[str, ...], where: str) -> list[str]:
    return [f"{where}: unknown key '{key}'; {suggest(str(key), known, 'allowed: ' + ', '.join(known))}"
            for key in section if key not in known]


def test_problems(test: dict, spec: dict, where: str) -> list[str]:
    """The column, relation, margin, by and reason of a claim or of its condition."""
    problems = []
    if "column" in test and test["column"] not in spec["columns"]:
        problems.append(f"{where}.column: '{test['column']}' is not a measured column of the table "
                        f"({', '.join(spec['columns'])})")
    relation = test.get("relation")
    if "relation" in test and relation not in RELATIONS:
        problems.append(f"{where}.relation: '{relation}' is not one of {', '.join(RELATIONS)}")
    for key in ("margin", "by"):
        if key in test and not (is_number(test[key]) and test[key] >= 0):
            problems.append(f"{where}.{key}: a number >= 0, not {test[key]!r}")
    if relation == "greater" and "margin" in test:
        problems.append(f"{where}.margin: greater takes no margin; a > b + by says by how much")
    if relation in ("at_least", "comparable") and "by" in test:
        problems.append(f"{where}.by: only for greater; {relation} takes a margin")
    if relation == "comparable" and not (is_number(test.get("margin")) and test["margin"] > 0):
        problems.append(f"{where}.margin: comparable needs a margin > 0 (|a - b| <= margin)")
    if ("margin" in test or "by" in test) and not (isinstance(test.get("reason"), str) and test["reason"].strip()):
        problems.append(f"{where}.reason: say why the {'margin' if 'margin' in test else 'by'} is what it is")
    return problems


def selection_problems(claim: dict, spec: dict, where: str) -> list[str]:
    problems = []
    for side in ("a", "b"):
        selection = claim.get(side)
        if side in claim and not (isinstance(selection, dict) and selection):
            problems.append(f"{where}.{side}: a map of row keys to a value or a list of values, e.g. {{optimizer: sga}}")
            continue
        for key, value in (selection or {}).items():
            if key not in spec["rows"]:
                problems.append(f"{where}.{side}.{key}: not a row key of the table ({', '.join(spec['rows'])})")
            if not (is_scalar(value) or (isinstance(value, list) and value and all(map(is_scalar, value)))):
                problems.append(f"{where}.{side}.{key}: a value or a list of values, not {value!r}")
    if problems or not ("a" in claim and "b" in claim):
        return problems
    compared = compared_keys(claim)
    if not compared:
        return [f"{where}: a and b name no row key in common; name the compared key in both (e.g. optimizer)"]
    for key in compared:
        both = {key_text(v) for v in allowed(claim["a"][key])} & {key_text(v) for v in allowed(claim["b"][key])}
        if both:
            problems.append(f"{where}: a and b both allow {key}={', '.join(sorted(both))}")
        if not spec["rows"][key].startswith(("config.", "labels.")):
            problems.append(f"{where}: the compared key {key} is {spec['rows'][key]}, not a config key (config....) "
                            "or a component's label (labels....)")
    return problems


# ----------------------------------------------------------------------------- rows and lines


@dataclass(frozen=True)
class Row:
    """One row of the table: one semantic config and its samples."""
    config: dict  # flattened, without the seed and merged keys
    keys: dict  # data, epochs and the row keys, as text
    setting: str  # cells.PAPER or "other: ..."
    variant: str
    samples: pd.DataFrame  # its samples: seed and the measured columns


@dataclass(frozen=True)
class Test:
    """A relation between the two sides' values of one column, decided."""
    column: str
    a: list[tuple]  # (seed, value) of side a; empty without a row
    b: list[tuple]
    interval: Interval | None
    outcome: str  # HOLDS, CONTRADICTED or UNRESOLVED
    n: int  # the seeds the interval rests on (without one: the smaller side's count)


@dataclass(frozen=True)
class Line:
    claim: dict
    setting: str  # PAPER_SETTING, "budget <name>", OTHER_RUNS or NO_RUNS
    where: str  # the data, epochs and row keys the line is about
    a: str  # side a's compared values, e.g. "sga"
    b: str
    test: Test
    condition: Test | None
    verdict: str  # "holds", "contradicted" or "not resolved at n = k"


def table_rows(samples: pd.DataFrame, row_keys: list[str]) -> list[Row]:
    """The table's rows (one per semantic config), in the order their first samples come."""
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(samples["config"]):
        groups.setdefault(json.dumps(config, sort_keys=True, default=str), []).append(index)
    rows = []
    for members in groups.values():
        first = samples.iloc[members[0]]
        keys = {key: key_text(first[key]) for key in [*IMPLICIT_KEYS, *row_keys]}
        rows.append(Row(first["config"], keys, first["setting"], first["variant"], samples.iloc[members]))
    return rows


def selected(row: Row, selection: dict) -> bool:
    return all(row.keys[key] in {key_text(v) for v in allowed(value)} for key, value in selection.items())


def comparable(a: Row, b: Row, compared: list[str]) -> bool:
    """The two configs agree in every key but the compared ones; keys of the compared key's section
    that only one side has are not compared: they come with the compared value (`optimizer.name`
    compared: StochGradAdam's `optimizer.rate`; `pruner.decay`: the keys of Self-Rectifying)."""
    components = tuple(key.rsplit(".", 1)[0] + "." for key in compared if "." in key)
    for key in a.config.keys() | b.config.keys():
        if key in compared:
            continue
        if key in a.config and key in b.config:
            if json.dumps(a.config[key], sort_keys=True) != json.dumps(b.config[key], sort_keys=True):
                return False
        elif not key.startswith(components):
            return False
    return True


def seed_values(row: Row | None, column: str) -> list[tuple]:
    """(seed, value) of a row's samples that have a value in `column`."""
    if row is None:
        return []
    numbers = pd.to_numeric(row.samples[column], errors="coerce")
    return [(seed, float(value)) for seed, value in zip(row.samples["seed"], numbers) if not math.isnan(value)]


def decide(test: dict, a: list[tuple], b: list[tuple]) -> Test:
    """The rule (docs/tables.md, "Claims") on the interval of a - b: greater holds when it lies
    above `by` and is contradicted when it lies below; at_least the same at -margin; comparable
    holds inside [-margin, margin] and is contradicted when it lies wholly outside."""
    interval = difference_interval(a, b)
    n = interval.n if interval else min(len(a), len(b))
    outcome = UNRESOLVED
    if interval and test["relation"] == "comparable":
        margin = test["margin"]
        if -margin <= interval.low and interval.high <= margin:
            outcome = HOLDS
        elif interval.low > margin or interval.high < -margin:
            outcome = CONTRADICTED
    elif interval:
        level = test.get("by", 0) if test["relation"] == "greater" else -test.get("margin", 0)
        if interval.low > level:
            outcome = HOLDS
        elif interval.high < level:
            outcome = CONTRADICTED
    return Test(test["column"], a, b, interval, outcome, n)


def verdict(tests: list[Test]) -> str:
    """Contradicted when any part is; holds when every part does; else not resolved at the n of
    the first part that is not."""
    if any(test.outcome == CONTRADICTED for test in tests):
        return CONTRADICTED
    open_parts = [test for test in tests if test.outcome != HOLDS]
    return f"{UNRESOLVED} at n = {open_parts[0].n}" if open_parts else HOLDS


def setting_of(rows: list[Row], table: str, merged: tuple[str, ...]) -> str:
    if not rows:
        return NO_RUNS
    if all(row.setting == PAPER for row in rows):
        return PAPER_SETTING
    names = {budget_of(table, row.config, merged) for row in rows}
    return f"budget {names.pop()}" if len(names) == 1 and None not in names else OTHER_RUNS


def line_of(claim: dict, a: Row | None, b: Row | None, spec: dict, table: str) -> Line:
    row_keys = list(spec["rows"])
    compared = compared_keys(claim)
    present = [row for row in (a, b) if row is not None]
    where = ""
    if present:
        keys = present[0].keys
        shown = [f"{key}={keys[key]}" for key in row_keys if key not in compared and keys[key] != ""]
        shown += [f"{side}: {row.variant}" for side, row in (("a", a), ("b", b)) if row is not None and row.variant]
        where = ", ".join([f"{keys['data']}, {keys['epochs']} epochs", *shown])
    test = decide(claim, seed_values(a, claim["column"]), seed_values(b, claim["column"]))
    condition = claim.get("condition")
    condition_test = decide(condition, seed_values(a, condition["column"]), seed_values(b, condition["column"])) \
        if condition else None
    return Line(claim, setting_of(present, table, tuple(spec.get("merged", []))), where, side_text(claim["a"], compared),
                side_text(claim["b"], compared), test, condition_test,
                verdict([test] + ([condition_test] if condition_test else [])))


def config_keys(source: str) -> list[str]:
    """The semantic config keys a compared row key stands for: config.X is X; labels.S (a
    component's label, e.g. labels.pruner for a user's pruner) is the component S itself: its
    name, its target and its source file's digest (report/cells.semantic)."""
    if source.startswith("labels."):
        section = source.removeprefix("labels.")
        return [f"{section}.name", f"{section}.target", f"sources.{section}"]
    return [source.removeprefix("config.")]


def side_text(selection: dict, compared: list[str]) -> str:
    return " ".join("/".join(key_text(v) for v in allowed(selection[key])) for key in compared)


def decide_claims(spec: dict, samples: pd.DataFrame, table: str) -> list[Line]:
    """Every claim of table `table` (its `spec`) decided on its `samples` (tables.records_frame):
    one line per pair of comparable rows, a row without a partner on a line of its own, a claim
    without rows on one line; the paper's setting first."""
    rows = table_rows(samples, list(spec["rows"]))
    lines = []
    for claim in spec.get("claims") or []:
        compared = [config_key for key in compared_keys(claim) for config_key in config_keys(spec["rows"][key])]
        side_a = [row for row in rows if selected(row, claim["a"])]
        side_b = [row for row in rows if selected(row, claim["b"])]
        pairs = [(a, b) for a in side_a for b in side_b if comparable(a, b, compared)]
        pairs += [(a, None) for a in side_a if all(pair[0] is not a for pair in pairs)]
        pairs += [(None, b) for b in side_b if all(pair[1] is not b for pair in pairs)]
        claim_lines = [line_of(claim, a, b, spec, table) for a, b in pairs or [(None, None)]]
        lines += sorted(claim_lines, key=lambda line: (line.setting != PAPER_SETTING, line.setting,
                                                        natural_key(line.where)))
    return lines


# ----------------------------------------------------------------------------- output


def relation_text(test: dict, a: str, b: str) -> str:
    if test["relation"] == "comparable":
        return f"|{a} − {b}| ≤ {number(test['margin'])}"
    if test["relation"] == "greater":
        return f"{a} > {b}" + (f" + {number(test['by'])}" if test.get("by") else "")
    return f"{a} ≥ {b}" + (f" − {number(test['margin'])}" if test.get("margin") else "")


def number(value: float) -> str:
    return f"{value:g}"


def side_summary(label: str, pairs: list[tuple]) -> str:
    if not pairs:
        return f"{label}: no runs"
    mean, std = mean_std([value for _, value in pairs])
    spread = "" if math.isnan(std) else f" ± {std:.2f}"
    return f"{label} {mean:.2f}{spread} (n = {len(pairs)})"


def interval_text(test: Test) -> str:
    if test.interval is None:
        return "no interval"
    interval = test.interval
    how = "paired" if interval.paired else "unpaired (Welch)"
    return f"{interval.diff:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}], {how}, n = {interval.n}"


def line_text(line: Line) -> str:
    test = line.test
    text = (f"{line.setting}{' · ' + line.where if line.where else ''}: "
            f"{side_summary(line.a, test.a)}, {side_summary(line.b, test.b)}; diff {interval_text(test)}")
    if line.condition is not None:
        condition = line.claim["condition"]
        text += (f"; {line.condition.column} diff {interval_text(line.condition)} "
                 f"({relation_text(condition, line.a, line.b)}: {line.condition.outcome})")
    return f"{text} → **{line.verdict}**"


def claims_markdown(spec: dict, lines: list[Line]) -> str:
    """The claims section under a table: per claim what it says and where from, then its lines."""
    parts = ["### Claims", "", RULE]
    for claim in spec.get("claims") or []:
        compared = compared_keys(claim)
        a, b = side_text(claim["a"], compared), side_text(claim["b"], compared)
        decided = f"{claim['column']}: {relation_text(claim, a, b)}"
        if claim.get("condition"):
            condition = claim["condition"]
            decided += f", where {condition['column']}: {relation_text(condition, a, b)}"
        parts += ["", f"**{claim['name']}**: {claim['says'].strip()} Decided on {decided}. "
                      f"Source: {claim['cite'].strip()}", ""]
        parts += [f"- {line_text(line)}" for line in lines if line.claim is claim]
    return "\n".join(parts)


def test_columns(test: Test | None, prefix: str = "") -> dict:
    interval = test.interval if test else None
    return {f"{prefix}diff": interval.diff if interval else None,
            f"{prefix}ci_low": interval.low if interval else None,
            f"{prefix}ci_high": interval.high if interval else None}


def claims_frame(lines: list[Line]) -> pd.DataFrame:
    """One row per line: the claims CSV."""
    rows = []
    for line in lines:
        claim, test = line.claim, line.test
        row = {"claim": claim["name"], "setting": line.setting, "where": line.where, "column": test.column,
               "relation": relation_text(claim, line.a, line.b)}
        for side, label, pairs in (("a", line.a, test.a), ("b", line.b, test.b)):
            mean, std = mean_std([value for _, value in pairs]) if pairs else (None, None)
            row.update({side: label, f"{side}_mean": mean, f"{side}_std": std, f"{side}_n": len(pairs)})
        row.update(test_columns(test))
        row.update(paired=test.interval.paired if test.interval else None, n=test.n)
        condition = claim.get("condition")
        row["condition"] = f"{condition['column']}: {relation_text(condition, line.a, line.b)}" if condition else ""
        row.update(test_columns(line.condition, "condition_"))
        row["condition_outcome"] = line.condition.outcome if line.condition else ""
        row.update(verdict=line.verdict, cite=claim["cite"].strip())
        rows.append(row)
    return pd.DataFrame(rows, columns=["claim", "setting", "where", "column", "relation", "a", "a_mean", "a_std",
                                       "a_n", "b", "b_mean", "b_std", "b_n", "diff", "ci_low", "ci_high", "paired",
                                       "n", "condition", "condition_diff", "condition_ci_low", "condition_ci_high",
                                       "condition_outcome", "verdict", "cite"])
