"use client";

import { useId } from "react";

/** The API key this browser sends (kept in localStorage). Dev mode on this computer needs none. */
export function ApiKeySettings({
  apiKey,
  onSave,
  open,
}: {
  apiKey: string;
  onSave: (key: string) => void;
  open?: boolean;
}) {
  const id = useId();
  return (
    <details className="settings" open={open}>
      <summary>Settings</summary>
      <form
        className="settings-form"
        onSubmit={(e) => {
          e.preventDefault();
          onSave(String(new FormData(e.currentTarget).get("apiKey") ?? ""));
        }}
      >
        <label htmlFor={`${id}-key`}>API key</label>
        <input
          key={apiKey}
          id={`${id}-key`}
          name="apiKey"
          type="password"
          autoComplete="off"
          spellCheck={false}
          defaultValue={apiKey}
          placeholder="not needed in dev mode"
          data-testid="api-key"
        />
        <button type="submit">Save</button>
        <p className="hint">Kept in this browser only. Not needed when Voicebot runs in dev mode on this computer.</p>
      </form>
    </details>
  );
}
