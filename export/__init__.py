"""edgerf.export: a trained checkpoint becomes stateful single-step graphs.

    step graph   (x_t, state_1..k) -> (logits_t, state_1'..k'), states bound by name
    onnx.py      torch -> ONNX (dynamo exporter, opset 18, weights inside the file)
    calibrate.py closed-loop trajectories over long unreset training streams, min/max ranges
    quantize.py  static QDQ int8 with a state-aware precision plan (int8 -> int16 activations)
    parity.py    the gate: exported graph vs torch over a long real stream, state fed back
    pipeline.py  `edgerf export`: all of the above, atomic, with a report
"""
