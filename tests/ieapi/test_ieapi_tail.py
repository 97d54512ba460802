"""The failure tail's bounds (ieapi.tail), the rule Kubernetes applies to a failed container's
log in the pod status: at most 80 lines and 2,048 bytes, the newest kept."""

from __future__ import annotations

from ieapi import tail


def test_short_output_is_kept_whole() -> None:
    assert tail.bound("a\nb\n") == tail.Tail("a\nb\n", truncated=False)
    assert tail.TailCollector().feed([b"a\n", b"b\n"]).result() == tail.Tail("a\nb\n", False)


def test_lines_are_cut_to_the_newest_80() -> None:
    text = "".join(f"{i}\n" for i in range(200))
    result = tail.bound(text)
    assert result.truncated
    assert result.text.splitlines() == [str(i) for i in range(120, 200)]


def test_bytes_are_cut_to_2048_on_a_character_boundary() -> None:
    text = "é" * 3000 + "\nend\n"  # two bytes per é: the cut may fall inside one
    result = tail.bound(text)
    assert result.truncated
    encoded = result.text.encode()
    assert len(encoded) <= tail.MAX_BYTES
    assert len(encoded) >= tail.MAX_BYTES - 1
    assert result.text.endswith("é\nend\n")
    assert set(result.text[:-5]) == {"é"}


def test_collector_memory_is_bounded_whatever_the_input() -> None:
    collector = tail.TailCollector()
    chunk = b"x" * 65536
    collector.feed(chunk for _ in range(1000))  # 64 MiB
    assert len(collector._window) <= tail.RAW_WINDOW_BYTES
    result = collector.feed([b"\xe2\x82\xac\nlast\n"]).result()
    assert result.truncated
    assert result.text.endswith("x€\nlast\n")
    assert len(result.text.encode()) <= tail.MAX_BYTES


def test_binary_and_control_characters_become_replacement_characters() -> None:
    raw = b"ok\x00\x1b[1m\xff\tend\r\n"
    result = tail.TailCollector().feed([raw]).result()
    assert result.text == "ok\ufffd\ufffd[1m\ufffd\tend\ufffd\n"
    assert tail.bound(result.text) == result  # cutting again changes nothing
