"""Tokenisation shared by queries and papers: words, offsets, folding."""

from __future__ import annotations

import pytest

from service.match.text import fold_plural, keys, normalise, scan, tokens


def words(text: str) -> list[str]:
    return [t.norm for t in scan(text)]


def test_offsets_point_at_the_words_in_the_original_text() -> None:
    text = "MPCache: MPC-Friendly KV Cache (KV-caches), Résumé — naïve?"
    found = tokens(text)
    assert [text[start:end] for _, start, end in found] == [
        "MPCache",
        "MPC",
        "Friendly",
        "KV",
        "Cache",
        "KV",
        "caches",
        "Résumé",
        "naïve",
    ]
    assert [key for key, _, _ in found] == keys(text)


def test_case_and_accents_fold() -> None:
    assert words("Schrödinger JIMÉNEZ Ångström ﬁne Straße") == [
        "schrodinger",
        "jimenez",
        "angstrom",
        "fine",
        "strasse",
    ]
    assert normalise("Ré") == "re"


def test_decomposed_accents_stay_inside_their_word() -> None:
    text = "re\u0301sume\u0301 done"
    assert [(t.norm, text[t.start : t.end]) for t in scan(text)] == [
        ("resume", "re\u0301sume\u0301"),
        ("done", "done"),
    ]


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("caches", "cache"),
        ("policies", "policy"),
        ("queries", "query"),
        ("classes", "class"),
        ("biases", "bias"),
        ("boxes", "box"),
        ("approaches", "approach"),
        ("responses", "response"),
        ("cases", "case"),
        ("sizes", "size"),
        ("statuses", "status"),
        ("models", "model"),
        ("llms", "llm"),
        ("ideas", "idea"),
        ("gaussians", "gaussian"),
        ("matrices", "matrix"),
        ("analyses", "analysis"),
        ("lenses", "lens"),
        ("uses", "use"),
    ],
)
def test_singular_and_plural_share_a_key(plural: str, singular: str) -> None:
    assert fold_plural(plural) == fold_plural(singular)


@pytest.mark.parametrize(
    "word", ["analysis", "bias", "class", "gaussian", "status", "process", "news", "lens"]
)
def test_words_that_only_look_plural_are_kept(word: str) -> None:
    assert fold_plural(word) == word


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("GPUs", "GPU"),
        ("gpus", "gpu"),
        ("GPUS", "GPU"),
        ("CPUs", "cpu"),
        ("cpus", "CPU"),
        ("NPUs", "NPU"),
        ("imus", "IMU"),
        ("LMs", "LM"),
        ("LLMs", "LLM"),
        ("VLMs", "VLM"),
        ("MLLMs", "MLLM"),
        ("CNNs", "CNN"),
        ("APIs", "API"),
        ("IDs", "ID"),
        ("V100s", "V100"),
        ("emus", "emu"),
    ],
)
def test_acronyms_plurals_share_their_singulars_key(plural: str, singular: str) -> None:
    assert keys(plural) == keys(singular)


@pytest.mark.parametrize(
    "written",
    [
        *("GPS", "RMS", "FPS", "DNS", "LMS", "lms", "Is", "As"),
        *("corpus", "status", "focus", "bonus", "thus", "Thus", "PLUS", "onus", "opus", "nous"),
    ],
)
def test_words_ending_in_s_that_are_not_plurals_keep_it(written: str) -> None:
    assert keys(written) == [written.lower()]


def test_letters_with_strokes_and_ligatures_fold() -> None:
    assert words("Łódź ØRSTED Ærø Chrupała Œuvre Đorđe Þór Ðiðrik ısı İzmir ẞ Ħal") == [
        "lodz",
        "orsted",
        "aero",
        "chrupala",
        "oeuvre",
        "dorde",
        "thor",
        "didrik",
        "isi",
        "izmir",
        "ss",
        "hal",
    ]


def test_keys_are_stable_under_folding() -> None:
    for word in ("caches", "policies", "classes", "biases", "responses", "analysis"):
        key = fold_plural(word)
        assert fold_plural(key) == key


def test_hyphens_punctuation_symbols_and_emoji_separate_words() -> None:
    assert words("KV-cache, top-k/top_p; a.b (c) [d] {e} 🚀rocket🚀 x|y+z") == [
        "kv",
        "cache",
        "top",
        "k",
        "top",
        "p",
        "a",
        "b",
        "c",
        "d",
        "e",
        "rocket",
        "x",
        "y",
        "z",
    ]


def test_regex_metacharacters_are_plain_separators() -> None:
    assert words(r".*+?[](){}|\^$") == []
    assert words(r"a.*b+c?") == ["a", "b", "c"]


def test_digits_are_word_characters() -> None:
    assert words("Llama3 in 4bit on 3D GPT-4o") == ["llama3", "in", "4bit", "on", "3d", "gpt", "4o"]


def test_words_are_whole_words() -> None:
    assert "rag" not in keys("Efficient storage for RAGged arrays")
    assert "rag" in keys("Graph RAG, revisited")


def test_latex_reads_as_its_letters() -> None:
    assert words("MoE$^2$: Optimizing") == ["moe", "2", "optimizing"]
    assert words(r"$\mathbf{x}_{i}$ and $\mathcal{O}(n^2)$") == ["x", "i", "and", "o", "n", "2"]
    assert words(r"$\alpha$-divergence") == ["alpha", "divergence"]
    text = r"\textbf{Bold} claims"
    assert [text[t.start : t.end] for t in scan(text)] == ["Bold", "claims"]


def test_each_cjk_character_is_a_word() -> None:
    assert words("大语言模型 inference") == ["大", "语", "言", "模", "型", "inference"]
    assert words("Ελληνικά Русский") == ["ελληνικα", "русскии"]
