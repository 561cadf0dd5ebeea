import Link from "next/link";
import type { ReactNode } from "react";

/** Title and navigation; `children` go on the right (connection state, settings). */
export function AppHeader({ current, children }: { current: "talk" | "documents"; children?: ReactNode }) {
  return (
    <header className="app-header">
      <div className="brand">
        <span className="brand-mark" aria-hidden="true">
          ◉
        </span>
        <span className="brand-name">Voicebot</span>
      </div>
      <nav aria-label="Main">
        <Link href="/" aria-current={current === "talk" ? "page" : undefined}>
          Talk
        </Link>
        <Link href="/documents/" aria-current={current === "documents" ? "page" : undefined}>
          Documents
        </Link>
      </nav>
      <div className="header-tools">{children}</div>
    </header>
  );
}
