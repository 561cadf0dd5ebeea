"use client";

/**
 * One voice session for the page: the protocol client, the microphone and the player, wired to
 * React state. Components call `press`/`release`/`stop`/`ask`; everything else is state.
 */

import { useCallback, useEffect, useReducer, useRef, useState } from "react";

import { useApiKey } from "@/hooks/use-api-key";
import { fetchSessionTurns, loadApiKey, loadSessionId, saveSessionId } from "@/lib/api";
import { describeMicProblem, MicCapture, MicError, type MicProblem, type TurnAudio } from "@/lib/capture";
import { config } from "@/lib/config";
import { conversationReducer, emptyConversation, isOpen } from "@/lib/conversation";
import { AudioPlayer, type PlaybackStats } from "@/lib/player";
import { VoiceClient, type ConnectionInfo } from "@/lib/voice-client";

type Phase = "idle" | "opening" | "recording" | "ending";

const TOO_SHORT_NOTE = "Too short to hear anything: hold the button while you speak, release when you are done.";
const MIC_READY_NOTE = "The microphone is ready. Now hold the button while you speak.";

export interface MicState {
  reason: MicProblem;
  message: string;
}

export function useVoiceSession() {
  const [conversation, dispatch] = useReducer(conversationReducer, emptyConversation);
  const [connection, setConnection] = useState<ConnectionInfo>({
    state: "idle",
    attempt: 0,
    retryAt: null,
    problem: null,
    sessionId: null,
  });
  const [playback, setPlayback] = useState<PlaybackStats>({
    chunksPlayed: 0,
    playedMs: 0,
    chunksDropped: 0,
    playing: false,
    turn: null,
    playedByTurn: {},
  });
  const [phase, setPhase] = useState<Phase>("idle");
  const [sent, setSent] = useState<TurnAudio & { frames: number }>({ durationMs: 0, rms: 0, frames: 0 });
  const [mic, setMic] = useState<MicState | null>(null);
  const [apiKey, saveKey] = useApiKey();

  const clientRef = useRef<VoiceClient | null>(null);
  const playerRef = useRef<AudioPlayer | null>(null);
  const captureRef = useRef<MicCapture | null>(null);
  const outputRef = useRef<AudioContext | null>(null);
  const phaseRef = useRef<Phase>("idle");
  const latestTurnRef = useRef<number | null>(null);
  const framesRef = useRef(0);
  const wasConnectedRef = useRef(false);

  const setPhaseBoth = (next: Phase) => {
    phaseRef.current = next;
    setPhase(next);
  };

  useEffect(() => {
    const player = new AudioPlayer(() => (outputRef.current ??= new AudioContext({ latencyHint: "interactive" })), setPlayback);
    const capture = new MicCapture(config.workletUrl, { onProgress: (audio) => setSent({ ...audio, frames: framesRef.current }) });
    let restored = false; // the first session.ready of this page has been handled
    const client = new VoiceClient({
      baseUrl: config.gatewayUrl,
      language: config.language,
      sessionId: loadSessionId(),
      apiKey: () => loadApiKey() || null,
      onEvent: (event) => {
        if (event.type === "session.ready") {
          player.reset();
          saveSessionId(event.session_id);
          if (event.resumed && !restored) {
            // The first connect of a reloaded tab: show the conversation it had. (On a reconnect
            // the page still holds the live conversation.)
            fetchSessionTurns(config.gatewayUrl, loadApiKey() || null, event.session_id).then(
              (turns) => dispatch({ type: "local.restore", turns }),
              () => {}, // the conversation goes on; only the old turns are not shown
            );
          }
          restored = true;
        }
        if (event.type === "turn.started") {
          latestTurnRef.current = event.turn;
          player.beginTurn(event.turn);
        }
        if (event.type === "audio.clear") player.clearTurn(event.turn);
        if (event.type === "error" && event.code === "shutting_down" && phaseRef.current !== "idle") {
          capture.abort(); // the turn was refused: stop sending its audio
          phaseRef.current = "idle";
          setPhase("idle");
        }
        dispatch({ type: "server", event });
      },
      onAudio: (chunk) => player.enqueue(chunk),
      onConnection: (info) => {
        setConnection(info);
        if (info.state === "connected") {
          wasConnectedRef.current = true;
        }
        if (info.state === "reconnecting" && wasConnectedRef.current) {
          wasConnectedRef.current = false;
          capture.abort();
          player.stopAll();
          latestTurnRef.current = null;
          phaseRef.current = "idle";
          setPhase("idle");
          dispatch({ type: "local.lost" });
        }
      },
    });
    clientRef.current = client;
    playerRef.current = player;
    captureRef.current = capture;
    client.start();

    // Tell people up front when the microphone is already blocked for this site.
    void navigator.permissions
      ?.query({ name: "microphone" as PermissionName })
      .then((status) => {
        const show = () => {
          if (status.state === "denied") setMic({ reason: "denied", message: describeMicProblem("denied") });
        };
        show();
        status.onchange = () => (status.state === "denied" ? show() : setMic(null));
      })
      .catch(() => {});

    const onHidden = () => {
      if (document.visibilityState === "hidden" && phaseRef.current === "idle") capture.release();
    };
    document.addEventListener("visibilitychange", onHidden);
    return () => {
      document.removeEventListener("visibilitychange", onHidden);
      client.close();
      capture.release();
      player.stopAll();
      void outputRef.current?.close().catch(() => {});
      outputRef.current = null;
    };
  }, []);

  /** Stop the answer that is playing or streaming, locally at once; the server is told too. */
  const interrupt = useCallback(() => {
    const player = playerRef.current;
    if (!player) return;
    if (latestTurnRef.current !== null) player.clearTurn(latestTurnRef.current);
    player.stopAll();
  }, []);

  const press = useCallback(async () => {
    const client = clientRef.current;
    const capture = captureRef.current;
    if (!client || !capture || phaseRef.current !== "idle") return;
    playerRef.current?.unlock();
    if (!client.ready) {
      dispatch({
        type: "server",
        event: { type: "error", code: "not_connected", message: "", turn: null, fatal: false },
      });
      return;
    }
    interrupt(); // barge-in: playback stops now, before the server even hears about it
    setPhaseBoth("opening");
    framesRef.current = 0;
    setSent({ durationMs: 0, rms: 0, frames: 0 });
    dispatch({ type: "local.voice" });
    client.send({ type: "turn.start" });
    try {
      await capture.ensure();
      setMic(null);
    } catch (e) {
      const problem = e instanceof MicError ? e : new MicError("failed", String(e));
      setMic({ reason: problem.reason, message: problem.message });
      client.send({ type: "turn.cancel" });
      dispatch({ type: "local.cancelled", note: "No audio: the microphone is not available." });
      setPhaseBoth("idle");
      return;
    }
    if ((phaseRef.current as Phase) !== "opening") {
      // Released while the microphone was being opened (often: to answer the permission prompt).
      client.send({ type: "turn.cancel" });
      dispatch({ type: "local.cancelled", note: MIC_READY_NOTE });
      setPhaseBoth("idle");
      return;
    }
    capture.begin((frame) => {
      if (client.sendAudio(frame)) framesRef.current += 1;
    });
    setPhaseBoth("recording");
  }, [interrupt]);

  const release = useCallback(async () => {
    const client = clientRef.current;
    const capture = captureRef.current;
    if (!client || !capture) return;
    if (phaseRef.current === "opening") {
      setPhaseBoth("ending"); // press() finishes the job once the microphone answers
      return;
    }
    if (phaseRef.current !== "recording") return;
    setPhaseBoth("ending");
    const audio = await capture.end();
    setSent({ ...audio, frames: framesRef.current });
    if (audio.durationMs < config.minSpeechMs) {
      client.send({ type: "turn.cancel" });
      dispatch({ type: "local.cancelled", note: TOO_SHORT_NOTE });
    } else {
      client.send({ type: "turn.end" });
      dispatch({ type: "local.released" });
    }
    setPhaseBoth("idle");
  }, []);

  const stop = useCallback(() => {
    const client = clientRef.current;
    if (!client) return;
    interrupt();
    if (phaseRef.current === "recording" || phaseRef.current === "ending") {
      captureRef.current?.abort();
      setPhaseBoth("idle");
      client.send({ type: "turn.cancel" });
      dispatch({ type: "local.cancelled", note: "Stopped." });
      return;
    }
    client.send({ type: "turn.cancel" });
  }, [interrupt]);

  const ask = useCallback(
    (text: string): boolean => {
      const client = clientRef.current;
      const question = text.trim();
      if (!client || !question || phaseRef.current !== "idle") return false;
      playerRef.current?.unlock();
      if (!client.ready) {
        dispatch({
          type: "server",
          event: { type: "error", code: "not_connected", message: "", turn: null, fatal: false },
        });
        return false;
      }
      interrupt();
      dispatch({ type: "local.text", text: question });
      client.send({ type: "text", text: question });
      return true;
    },
    [interrupt],
  );

  const setApiKey = useCallback(
    (key: string) => {
      saveKey(key);
      clientRef.current?.reconnectNow();
    },
    [saveKey],
  );

  const retryNow = useCallback(() => clientRef.current?.reconnectNow(), []);
  const dismissError = useCallback(() => dispatch({ type: "local.dismiss-error" }), []);

  const last = conversation.turns[conversation.turns.length - 1];
  const busy = last ? isOpen(last) : false;

  return {
    conversation,
    connection,
    playback,
    phase,
    recording: phase === "opening" || phase === "recording",
    busy,
    sent,
    mic,
    apiKey,
    press,
    release,
    stop,
    ask,
    setApiKey,
    retryNow,
    dismissError,
  };
}

export type VoiceSession = ReturnType<typeof useVoiceSession>;
