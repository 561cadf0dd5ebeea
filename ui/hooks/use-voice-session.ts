"use client";

/**
 * One voice session for the page: the protocol client, the microphone and the player, wired to
 * React state. Components call `press`/`release`/`stop`/`ask` (push-to-talk and typed questions)
 * and `setMode`/`listen`/`setMuted` (hands-free); everything else is state.
 *
 * Hands-free: the microphone streams from the switch (a user gesture, which also unlocks
 * playback) until the switch back or until the page is hidden, and comes back when the page is
 * shown again. After a reload the panel asks for one press before it listens. Audio goes out
 * only once the gateway has confirmed hands-free mode (push-to-talk would refuse it).
 */

import { useCallback, useEffect, useReducer, useRef, useState, useSyncExternalStore } from "react";

import { useApiKey } from "@/hooks/use-api-key";
import { fetchSessionTurns, loadApiKey, loadSessionId, saveSessionId } from "@/lib/api";
import { describeMicProblem, MicCapture, MicError, type MicLevel, type MicProblem, type TurnAudio } from "@/lib/capture";
import { config } from "@/lib/config";
import { conversationReducer, emptyConversation, isOpen, type Conversation } from "@/lib/conversation";
import { handsFreeState, loadMode, saveMode } from "@/lib/handsfree";
import { AudioPlayer, type PlaybackStats } from "@/lib/player";
import type { SessionMode } from "@/lib/protocol";
import { VoiceClient, type ConnectionInfo } from "@/lib/voice-client";

/** Push-to-talk: where the current press is. */
type Phase = "idle" | "opening" | "recording" | "ending";
/** Hands-free: where the microphone's stream is. */
export type ListenPhase = "off" | "opening" | "on";

const MODE_CHANGED = "voicebot:mode";
const SILENT: MicLevel = { dbfs: -Infinity, level: 0 };
const HIDDEN_NOTE = "Stopped listening: the page was hidden.";

function subscribeMode(onChange: () => void): () => void {
  // This tab only: another tab's switch must not change what this tab's session does.
  window.addEventListener(MODE_CHANGED, onChange);
  return () => window.removeEventListener(MODE_CHANGED, onChange);
}

/** An open hands-free turn the gateway is still hearing. */
function heardTurn(conversation: Conversation): boolean {
  return conversation.turns.some((t) => t.epoch === conversation.epoch && t.status === "recording");
}

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
  const mode = useSyncExternalStore<SessionMode>(subscribeMode, loadMode, () => "push_to_talk");
  const [serverMode, setServerMode] = useState<SessionMode | null>(null);
  const [listening, setListening] = useState<ListenPhase>("off");
  const [muted, setMutedState] = useState(false);
  const [level, setLevel] = useState<MicLevel>(SILENT);

  const clientRef = useRef<VoiceClient | null>(null);
  const playerRef = useRef<AudioPlayer | null>(null);
  const captureRef = useRef<MicCapture | null>(null);
  const outputRef = useRef<AudioContext | null>(null);
  const phaseRef = useRef<Phase>("idle");
  const latestTurnRef = useRef<number | null>(null);
  const framesRef = useRef(0);
  const wasConnectedRef = useRef(false);
  const modeRef = useRef<SessionMode>("push_to_talk");
  const listenRef = useRef<ListenPhase>("off");
  const conversationRef = useRef<Conversation>(emptyConversation);

  const setPhaseBoth = (next: Phase) => {
    phaseRef.current = next;
    setPhase(next);
  };

  const setListenBoth = useCallback((next: ListenPhase) => {
    listenRef.current = next;
    setListening(next);
  }, []);

  useEffect(() => {
    conversationRef.current = conversation;
  }, [conversation]);

  /** Hands-free: open the microphone and stream it, from now until `stopListening`. */
  const startListening = useCallback(async () => {
    const client = clientRef.current;
    const capture = captureRef.current;
    if (!client || !capture || modeRef.current !== "hands_free" || listenRef.current !== "off") return;
    setListenBoth("opening");
    try {
      await capture.ensure();
      setMic(null);
    } catch (e) {
      const problem = e instanceof MicError ? e : new MicError("failed", String(e));
      setMic({ reason: problem.reason, message: problem.message });
      if ((listenRef.current as ListenPhase) === "opening") setListenBoth("off");
      return;
    }
    // Switched back, or stopped, while the microphone was being opened.
    if ((listenRef.current as ListenPhase) !== "opening" || modeRef.current !== "hands_free") return;
    framesRef.current = 0;
    capture.begin((frame) => {
      if (client.serverMode === "hands_free" && client.sendAudio(frame)) framesRef.current += 1;
    });
    setListenBoth("on");
  }, [setListenBoth]);

  const stopListening = useCallback(() => {
    if (listenRef.current === "off") return;
    if (listenRef.current === "on") captureRef.current?.abort();
    setListenBoth("off");
    setLevel(SILENT);
  }, [setListenBoth]);

  useEffect(() => {
    modeRef.current = loadMode();
    const player = new AudioPlayer(() => (outputRef.current ??= new AudioContext({ latencyHint: "interactive" })), setPlayback);
    const capture = new MicCapture(config.workletUrl, {
      onProgress: (audio) => setSent({ ...audio, frames: framesRef.current }),
      onLevel: setLevel,
      onLost: () => {
        // Unplugged or revoked: hands-free stops; the panel offers to start again.
        if (listenRef.current !== "off") {
          listenRef.current = "off";
          setListening("off");
          setLevel(SILENT);
          setMic({ reason: "absent", message: describeMicProblem("absent") });
        }
      },
    });
    let restored = false; // the first session.ready of this page has been handled
    let resumeWhenShown = false; // hands-free was listening when the page was hidden
    const client = new VoiceClient({
      baseUrl: config.gatewayUrl,
      language: config.language,
      mode: modeRef.current,
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
          setServerMode(event.mode ?? "push_to_talk");
        }
        if (event.type === "session.updated") setServerMode(event.mode);
        if (event.type === "turn.started") {
          latestTurnRef.current = event.turn;
          // Speech that starts a turn while the answer plays is a barge-in: silence it now,
          // before the gateway's audio.clear arrives. An older answer not playing yet is left
          // to the gateway (audio.clear when it interrupts it).
          if (event.trigger === "speech") player.stopAll();
          else player.beginTurn(event.turn);
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
        } else {
          setServerMode(null);
        }
        if (info.state === "reconnecting" && wasConnectedRef.current) {
          wasConnectedRef.current = false;
          // A push-to-talk recording is lost; a hands-free stream goes on (nothing is sent
          // until the resumed session confirms hands-free).
          if (listenRef.current === "off") capture.abort();
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

    const onVisibility = () => {
      if (document.visibilityState === "hidden") {
        if (listenRef.current !== "off") {
          resumeWhenShown = true;
          if (heardTurn(conversationRef.current)) {
            // The gateway would wait for the end of that speech: end the turn here instead.
            client.send({ type: "turn.cancel" });
            dispatch({ type: "local.cancelled", note: HIDDEN_NOTE });
          }
          stopListening();
        }
        if (phaseRef.current === "idle") capture.release();
      } else if (resumeWhenShown) {
        resumeWhenShown = false;
        void startListening();
      }
    };
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      client.close();
      capture.release();
      player.stopAll();
      void outputRef.current?.close().catch(() => {});
      outputRef.current = null;
    };
  }, [startListening, stopListening]);

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
    if (!client || !capture || phaseRef.current !== "idle" || modeRef.current !== "push_to_talk") return;
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
    // Hands-free: a turn still being heard ends here (an answer in flight gets its turn.done).
    if (modeRef.current === "hands_free") dispatch({ type: "local.cancelled", note: "Stopped." });
  }, [interrupt]);

  const setMuted = useCallback((next: boolean) => {
    captureRef.current?.setMuted(next);
    setMutedState(next);
  }, []);

  /** Switch between push-to-talk and hands-free; kept for this browser's next visits. */
  const setMode = useCallback(
    (next: SessionMode) => {
      const client = clientRef.current;
      if (!client || next === modeRef.current || phaseRef.current !== "idle") return;
      playerRef.current?.unlock(); // a gesture: hands-free answers may play from now on
      modeRef.current = next;
      saveMode(next);
      window.dispatchEvent(new Event(MODE_CHANGED));
      if (next === "hands_free") {
        client.setMode(next);
        void startListening();
      } else {
        stopListening(); // the last frame goes out before session.update
        setMuted(false); // a push-to-talk press must never record silence
        client.setMode(next);
      }
    },
    [setMuted, startListening, stopListening],
  );

  /** Hands-free: start listening again (after a reload, or when the microphone went away). */
  const listen = useCallback(() => {
    playerRef.current?.unlock();
    void startListening();
  }, [startListening]);

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
  const live = mode === "hands_free" && listening === "on" && connection.state === "connected" && serverMode === "hands_free";

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
    mode,
    serverMode,
    listening,
    muted,
    level,
    /** What the hands-free panel shows; null in push-to-talk. */
    handsFree: mode === "hands_free" ? handsFreeState({ live, muted, playing: playback.playing, conversation }) : null,
    press,
    release,
    stop,
    ask,
    setMode,
    listen,
    setMuted,
    setApiKey,
    retryNow,
    dismissError,
  };
}

export type VoiceSession = ReturnType<typeof useVoiceSession>;
