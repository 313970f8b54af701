"""PyTorch/pandas reference values for chapter 6: the book's data preparation (section 6.2)
with pandas and numpy, summarised as JSON. Run through scripts/reference/generate.sh.
"""
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from shared import data_file  # noqa: E402


def collection_path():
    return data_file("SMSSpamCollection")


def create_balanced_dataset(df):
    num_spam = df[df["Label"] == "spam"].shape[0]
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    return pd.concat([ham_subset, df[df["Label"] == "spam"]])


def random_split(df, train_frac, validation_frac):
    df = df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


def digest(df):
    rows = "\n".join(f"{label}\t{text}" for label, text in zip(df["Label"], df["Text"]))
    return hashlib.sha256(rows.encode("utf-8")).hexdigest()


def main():
    df = pd.read_csv(collection_path(), sep="\t", header=None, names=["Label", "Text"])
    out = {"pandas": pd.__version__, "rows": len(df), "counts": df["Label"].value_counts().to_dict()}
    balanced = create_balanced_dataset(df)
    out["balanced_counts"] = balanced["Label"].value_counts().to_dict()
    balanced["Label"] = balanced["Label"].map({"ham": 0, "spam": 1})
    out["balanced_digest"] = digest(balanced)
    parts = dict(zip(["train", "validation", "test"], random_split(balanced, 0.7, 0.1)))
    for name, part in parts.items():
        out[name] = {"len": len(part), "digest": digest(part), "first_text": part["Text"].iloc[0],
                     "labels_first20": part["Label"].iloc[:20].tolist()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
