"use client";

import { useId } from "react";

import type { SessionMode } from "@/lib/protocol";

const OPTIONS: Array<{ mode: SessionMode; label: string }> = [
  { mode: "push_to_talk", label: "Push to talk" },
  { mode: "hands_free", label: "Hands-free" },
];

/**
 * Push-to-talk or hands-free, as a pair of radio buttons drawn as one segmented control.
 * `data-server-mode` is what the gateway has confirmed (empty while not connected).
 */
export function ModeSwitch({
  mode,
  serverMode,
  disabled,
  onChange,
}: {
  mode: SessionMode;
  serverMode: SessionMode | null;
  disabled: boolean;
  onChange: (mode: SessionMode) => void;
}) {
  const name = useId();
  return (
    <fieldset
      className="mode-switch"
      data-testid="mode-switch"
      data-mode={mode}
      data-server-mode={serverMode ?? ""}
      disabled={disabled}
    >
      <legend className="sr-only">How to talk</legend>
      {OPTIONS.map((o) => (
        <label key={o.mode} className={o.mode === mode ? "mode-option mode-option-on" : "mode-option"} data-testid={`mode-${o.mode}`}>
          <input type="radio" name={name} value={o.mode} checked={o.mode === mode} onChange={() => onChange(o.mode)} />
          {o.label}
        </label>
      ))}
    </fieldset>
  );
}
