import type { Metadata } from "next";

import { DocumentsView } from "@/components/documents-view";

export const metadata: Metadata = { title: "Documents · Voicebot" };

export default function DocumentsPage() {
  return <DocumentsView />;
}
