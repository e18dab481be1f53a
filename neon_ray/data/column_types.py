"""Which numeric columns are nominal: the benchmark datasets' metadata and a user's sidecar file.

A CSV reads integer-coded categories (PMLB's codes, IDs, a day of the week) as numbers, and a
network fed them as numbers sees an order that does not exist. The columns listed here are
encoded as categories by `data/preprocess.py` (one-hot up to `MAX_ONE_HOT_LEVELS` levels,
frequency above).

- Benchmark datasets (`BENCHMARK_COLUMN_TYPES`, keyed by MANIFEST name): taken from each
  source's own attribute types, since ../shared is read-only. `categorical` lists only the
  nominal columns the file stores as numbers (nominal text columns are categorical anyway).
  Two-level nominal columns are listed under `binary` and stay numeric: min-max scaling maps
  them to one 0/1 feature, which is what a one-hot pair would say twice. `decided_by` says how
  an entry was decided: "source" (the attribute types named in `evidence`) or "rule" (no
  attribute types could be found for the source; `RULE` then decides).
- A user's own table `DATA.csv` (or .csv.gz, .parquet) declares its nominal columns in a sidecar
  file next to it, `DATA.csv.columns.json`: `{"categorical": ["col", ...]}`. The sidecar is read
  wherever the table is loaded (a path, or a MANIFEST entry of a user's data directory), so a
  zoo build on Ray workers sees the same declaration without any extra configuration.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from neon_ray.errors import DataError

SIDECAR_SUFFIX = ".columns.json"
SIDECAR_KEYS = ("categorical",)
RULE = (
    "no attribute types found for the source: a numeric column is nominal only if the MANIFEST "
    "notes call it coded (integer codes, IDs, a nominal attribute); otherwise it stays numeric"
)
_PMLB = "EpistasisLab/pmlb datasets/{}/metadata.yaml (commit {})"


@dataclass(frozen=True)
class ColumnTypes:
    """One benchmark dataset's nominal columns stored as numbers, and where that was decided."""

    categorical: tuple[str, ...]
    binary: tuple[str, ...]
    decided_by: str
    evidence: str

    def __post_init__(self):
        if self.decided_by not in ("source", "rule"):
            raise ValueError(f"decided_by must be 'source' or 'rule', got {self.decided_by!r}")
        if set(self.categorical) & set(self.binary):
            raise ValueError(f"columns listed both categorical and binary: {set(self.categorical) & set(self.binary)}")


def _pmlb(directory: str, commit: str, note: str = "", categorical=(), binary=()) -> ColumnTypes:
    evidence = _PMLB.format(directory, commit) + (f": {note}" if note else ": every feature 'continuous'")
    return ColumnTypes(tuple(categorical), tuple(binary), "source", evidence)


def _rule(note: str, binary=()) -> ColumnTypes:
    return ColumnTypes((), tuple(binary), "rule", f"{RULE}; {note}")


_PMLB_COMMIT = "28664fa"
BENCHMARK_COLUMN_TYPES: dict[str, ColumnTypes] = {
    "2dplanes": _pmlb("215_2dplanes", _PMLB_COMMIT),
    "fried": _pmlb("564_fried", _PMLB_COMMIT),
    "house_8L": _pmlb("218_house_8L", _PMLB_COMMIT),
    "pm10": _pmlb("522_pm10", _PMLB_COMMIT, "every feature 'continuous', hour_of_day included"),
    "no2": _pmlb("547_no2", "0aa5efc", "every feature 'continuous', hour_of_day included"),
    "ailerons": _rule("source akmand/datasets ailerons.csv has no types and the notes call no column coded"),
    "Amazon_employee_access": ColumnTypes(
        ("RESOURCE", "MGR_ID", "ROLE_ROLLUP_1", "ROLE_ROLLUP_2", "ROLE_DEPTNAME",
         "ROLE_TITLE", "ROLE_FAMILY_DESC", "ROLE_FAMILY", "ROLE_CODE"),
        (), "source",
        "Kaggle Amazon Employee Access Challenge data description: RESOURCE, MGR_ID and every ROLE_* "
        "column is an ID (MANIFEST notes: 'all 9 features are categorical IDs')",
    ),
    "bank-marketing": ColumnTypes(
        (), (), "source",
        "UCI bank-names.txt: age, balance, day, duration, campaign, pdays, previous are '(numeric)'; "
        "the categorical and binary attributes are text in the file",
    ),
    "cardiotocography": _rule(
        "the A..SUSP class indicators are 0/1; Tendency (-1 left asymmetric, 0 symmetric, 1 right "
        "asymmetric per UCI) is ordered and stays numeric",
        binary=("A", "B", "C", "D", "E", "AD", "DE", "LD", "FS", "SUSP"),
    ),
    "diabetes": _pmlb("diabetes", _PMLB_COMMIT),
    "electricity": ColumnTypes(
        ("day",), (), "source",
        "diegomarron/ElasticSwapRandomForest datasets/elecNormNew.arff: '@attribute day {1,2,3,4,5,6,7}'; "
        "every other feature 'numeric'",
    ),
    "jungle_chess_2pcs_raw_endgame_complete": _rule(
        "the OpenML 41027 export has no types and the notes call no column coded (strength, file, rank)"
    ),
    "kropt": _pmlb(
        "krkopt", _PMLB_COMMIT, "all six features 'categorical'; the files are text in this file, the ranks integers",
        categorical=("white_king_row", "white_rook_row", "black_king_row"),
    ),
    "kr-vs-k": _pmlb(
        "krkopt", _PMLB_COMMIT, "all six features 'categorical'; the files are text in this file, the ranks integers",
        categorical=("white_king_row", "white_rook_row", "black_king_row"),
    ),
    "mfeat-karhunen": _pmlb("mfeat_karhunen", _PMLB_COMMIT),
    "mfeat-morphological": _pmlb("mfeat_morphological", _PMLB_COMMIT),
    "nursery": _pmlb("nursery", _PMLB_COMMIT, "all eight features 'categorical', all text in this file"),
    "phoneme": _pmlb("phoneme", _PMLB_COMMIT),
    "satimage": _pmlb("satimage", "253138e"),
    "airlines-2007-dot-sample": ColumnTypes(
        ("Month", "DayofMonth", "DayofWeek"), ("Diverted",), "source",
        "kosmag/FeatExtream data/airlines.arff: Month, DayofMonth, DayofWeek, Diverted {0,1} are nominal "
        "(UniqueCarrier, Origin, Dest too, text in this file); Year and the times/distances 'numeric'",
    ),
    "default-of-credit-card-clients": ColumnTypes(
        (), (), "source",
        "UCI variable description: SEX, EDUCATION, MARRIAGE are codes (text in this file); PAY_* is a "
        "measurement scale of months of delay (ordered), the amounts and AGE are numbers",
    ),
    "ecoli": _pmlb("ecoli", _PMLB_COMMIT),
    "haberman": _pmlb(
        "haberman", _PMLB_COMMIT, "Patients_year_of_operation 'categorical', the other two 'continuous'",
        categorical=("Patients_year_of_operation",),
    ),
    "optdigits": _pmlb("optdigits", _PMLB_COMMIT),
    "letter": _pmlb("letter", "1fd61ec"),
    "adult": _pmlb(
        "adult", "05a9f86",
        "workclass, marital-status, occupation, relationship, race, native-country 'categorical'; "
        "education 'ordinal' but its codes are alphabetical (10th=0 .. Some-college=15), so nominal "
        "(education-num carries the order); sex 'binary'; the rest 'continuous'",
        categorical=("workclass", "education", "marital-status", "occupation", "relationship", "race", "native-country"),
        binary=("sex",),
    ),
    "analcatdata_dmft": _pmlb(
        "analcatdata_dmft", _PMLB_COMMIT, "all four features 'categorical'; Gender has two levels",
        categorical=("DMFT.Begin", "DMFT.End", "Ethnic"), binary=("Gender",),
    ),
    "shuttle": _pmlb("shuttle", _PMLB_COMMIT),
}
"""MANIFEST name -> the nominal columns its file stores as numbers, with provenance."""


def benchmark_categorical(name: str, columns: Sequence[str]) -> tuple[str, ...]:
    """The built-in nominal columns of MANIFEST dataset `name` that `columns` has (none if unknown)."""
    types = BENCHMARK_COLUMN_TYPES.get(name)
    return tuple(c for c in types.categorical if c in columns) if types else ()


def sidecar_path(data_path: Path) -> Path:
    """`DATA.csv` -> `DATA.csv.columns.json`, next to it."""
    return data_path.with_name(data_path.name + SIDECAR_SUFFIX)


def declared_categorical(data_path: Path, columns: Sequence[str], target: str) -> tuple[str, ...]:
    """The categorical columns the sidecar of `data_path` declares (none without a sidecar), checked
    against the table's `columns`: each must be a feature column."""
    side = sidecar_path(Path(data_path))
    if not side.is_file():
        return ()
    expected = 'expected a JSON object like {"categorical": ["column", ...]}'
    try:
        spec = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{side}: cannot read the column declarations ({exc}); {expected}") from exc
    if not isinstance(spec, dict) or set(spec) - set(SIDECAR_KEYS):
        found = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise DataError(f"{side}: unexpected content {found}; {expected}")
    declared = spec.get("categorical", [])
    if not isinstance(declared, list) or not all(isinstance(c, str) for c in declared):
        raise DataError(f"{side}: 'categorical' is {declared!r}; {expected}")
    for column in declared:
        if column == target:
            raise DataError(f"{side}: {column!r} is the target column of {data_path}; list feature columns only")
        if column not in columns:
            raise DataError(
                f"{side}: categorical column {column!r} is not a column of {data_path}; "
                f"its columns: {[c for c in columns if c != target]}"
            )
    return tuple(dict.fromkeys(declared))
