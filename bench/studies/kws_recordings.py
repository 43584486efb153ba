"""The shipped keyword model on recordings of unseen speakers: bench/results/kws_recordings.{md,json}.

    python -m edgerf.bench.studies.kws_recordings [--model kws-gru] [--minutes 10] [--snrs 20,12,6]
                                                  [--split test|val] [--out PATH]

For each SNR, ``edgerf.data.recordings`` makes a seeded recording (test-split speakers,
keywords and ``_unknown_`` words over a levelled real background bed) and ``edgerf stream
MODEL rec.wav`` (the command line, as a user runs it, at the manifest's operating point)
reports events, scored with ``edgerf.data.recordings.score``: keywords found, missed, false
accepts. The built-in demo recording is scored the same way. ``--split val`` makes the
recordings of validation speakers instead: what candidate models are compared on (the test
speakers are for the figures of the one chosen).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edgerf.bench.report import markdown_table, result_file
from edgerf.bench.studies import RESULTS

COLUMNS = ["recording", "snr_db", "seconds", "keywords", "found", "found_rate", "false_accepts",
           "false_accepts_per_30_keywords"]


def stream_events(model: str, wav: Path) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "edgerf", "stream", model, str(wav)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"edgerf stream failed: {r.stderr[-1000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def main(argv=None) -> int:
    from edgerf.data.recordings import generate, score, write
    from edgerf.data.source import locate
    from edgerf.models import DEMO_RECORDING, DEMO_TRUTH

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="kws-gru")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--snrs", default="20,12,6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="whose words: test speakers (the reported figures) or val (comparing candidates)")
    p.add_argument("--out", default=str(RESULTS / "kws_recordings"))
    a = p.parse_args(argv)
    root = locate("speech-commands").root
    rows = []
    demo = json.loads(DEMO_TRUTH.read_text())
    truth = {"seconds": demo["seconds"], "words": [{**w, "keyword": True} for w in demo["words"]]}
    s = score(stream_events(a.model, DEMO_RECORDING), truth, tolerance_s=0.3)
    rows.append({"recording": DEMO_RECORDING.name, "snr_db": None, "seconds": demo["seconds"], **s})
    with tempfile.TemporaryDirectory() as tmp:
        for snr in map(float, a.snrs.split(",")):
            pcm, truth = generate(root, a.minutes * 60, snr, seed=a.seed, split=a.split)
            wav = Path(tmp) / f"rec{snr:g}.wav"
            write(wav, pcm, truth)
            s = score(stream_events(a.model, wav), truth)
            rows.append({"recording": f"--minutes {a.minutes:g} --snr {snr:g} --seed {a.seed}"
                                      + (f" --split {a.split}" if a.split != "test" else ""), "snr_db": snr,
                         "seconds": truth["seconds"], **s})
            print({k: v for k, v in rows[-1].items() if k != "false"}, flush=True)
    command = "python -m edgerf.bench.studies.kws_recordings " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(a.out)
    result_file(out, ".json").write_text(json.dumps({"command": command.strip(), "model": a.model, "rows": rows},
                                                   indent=1) + "\n")
    text = (f"# `{a.model}` on recordings of speakers it never heard\n\nProduced by `{command.strip()}`. Each "
            f"recording: `python -m edgerf.data.recordings` with the options shown ({a.split}-split speakers; 70% "
            "keywords, 30% `_unknown_` words; a real background bed levelled to -33 dBFS; 1-2.5 s between words), "
            f"run through `edgerf stream {a.model} REC.wav` at the manifest's operating point. A keyword is found "
            "when an event of its class overlaps it (its end + 0.5 s; 0.3 s on the demo); every other event is a "
            "false accept.\n\n" + markdown_table(rows, COLUMNS) + "\n")
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
