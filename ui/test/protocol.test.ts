import { describe, expect, it } from "vitest";

import { describeError, encodeAudioFrame, parseAudioFrame, parseServerEvent } from "@/lib/protocol";

describe("audio frames from the server", () => {
  it("reads the 16-byte header and the PCM16 samples", () => {
    const frame = encodeAudioFrame(7, 3, 22_050, Int16Array.from([0, 16384, -32768, 32767]));
    const chunk = parseAudioFrame(frame);
    expect(chunk).not.toBeNull();
    expect(chunk?.turn).toBe(7);
    expect(chunk?.seq).toBe(3);
    expect(chunk?.sampleRate).toBe(22_050);
    expect(Array.from(chunk?.samples ?? [])).toEqual([0, 0.5, -1, 32767 / 32768]);
  });

  it("matches the byte layout of orchestrator/protocol.py (struct '<BBHIII')", () => {
    // AudioHeader(turn=1, seq=2, sample_rate=22050).pack() + two samples (1, -1)
    const bytes = Uint8Array.from([1, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x22, 0x56, 0, 0, 1, 0, 0xff, 0xff]);
    const chunk = parseAudioFrame(bytes.buffer);
    expect(chunk).toMatchObject({ turn: 1, seq: 2, sampleRate: 22_050 });
    expect(Array.from(chunk?.samples ?? []).map((s) => Math.round(s * 32768))).toEqual([1, -1]);
  });

  it("refuses frames that are not v1 audio", () => {
    expect(parseAudioFrame(new ArrayBuffer(8))).toBeNull();
    const wrongKind = new Uint8Array(encodeAudioFrame(1, 0, 16_000, new Int16Array(2)));
    wrongKind[0] = 2;
    expect(parseAudioFrame(wrongKind.buffer)).toBeNull();
    const wrongVersion = new Uint8Array(encodeAudioFrame(1, 0, 16_000, new Int16Array(2)));
    wrongVersion[1] = 9;
    expect(parseAudioFrame(wrongVersion.buffer)).toBeNull();
  });
});

describe("server events", () => {
  it("parses known events and ignores the rest", () => {
    expect(parseServerEvent('{"type":"turn.started","turn":2,"trigger":"speech"}')).toEqual({ type: "turn.started", turn: 2, trigger: "speech" });
    expect(parseServerEvent('{"type":"telemetry"}')).toBeNull();
    expect(parseServerEvent("not json")).toBeNull();
    expect(parseServerEvent("[1]")).toBeNull();
  });
});

describe("errors in plain words", () => {
  it.each([
    "bad_request",
    "bad_audio",
    "too_large",
    "unauthorized",
    "rate_limited",
    "not_found",
    "model_unavailable",
    "store_unavailable",
    "timeout",
    "shutting_down",
    "internal",
  ])("has a sentence for %s", (code) => {
    const text = describeError(code, "detail");
    expect(text.length).toBeGreaterThan(20);
    expect(text).not.toMatch(/Traceback|Exception/);
  });

  it("says speech failed but the text goes on for a non-fatal model error during an answer", () => {
    expect(describeError("model_unavailable", "tts down", { duringAnswer: true })).toMatch(/text only/);
  });

  it("falls back for unknown codes", () => {
    expect(describeError("brand_new")).toMatch(/went wrong/);
  });
});
