"use client";

import { useCallback, useSyncExternalStore } from "react";

import { loadApiKey, saveApiKey } from "@/lib/api";

const CHANGED = "voicebot:api-key";

function subscribe(onChange: () => void): () => void {
  window.addEventListener("storage", onChange); // other tabs
  window.addEventListener(CHANGED, onChange); // this tab
  return () => {
    window.removeEventListener("storage", onChange);
    window.removeEventListener(CHANGED, onChange);
  };
}

/** The API key kept in localStorage, shared by every page and tab; "" before hydration. */
export function useApiKey(): [string, (key: string) => void] {
  const key = useSyncExternalStore(subscribe, loadApiKey, () => "");
  const save = useCallback((next: string) => {
    saveApiKey(next.trim());
    window.dispatchEvent(new Event(CHANGED));
  }, []);
  return [key, save];
}
