"use client";

import { useCallback, useEffect, useId, useState } from "react";

import { ApiKeySettings } from "@/components/api-key-settings";
import { AppHeader } from "@/components/app-header";
import { useApiKey } from "@/hooks/use-api-key";
import { ApiError, loadApiKey } from "@/lib/api";
import { config } from "@/lib/config";
import { deleteDocument, listDocuments, uploadFile, type DocumentInfo } from "@/lib/documents";

interface UploadRow {
  id: number;
  name: string;
  size: number;
  progress: number; // 0..1 of the bytes sent
  state: "waiting" | "uploading" | "processing" | "ingested" | "unchanged" | "failed";
  chunks: number;
  error: string | null;
}

const ACCEPT = ".md,.markdown,.txt,.text,.html,.htm,.pdf";

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function formatDate(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function DocumentsView() {
  const [apiKey, setApiKey] = useApiKey();
  const [collection, setCollection] = useState<string>(config.collection);
  const [collectionDraft, setCollectionDraft] = useState<string>(config.collection);
  const applyCollection = () => {
    const next = collectionDraft.trim() || config.collection;
    setCollectionDraft(next);
    setCollection(next);
  };
  const [docs, setDocs] = useState<DocumentInfo[] | null>(null);
  const [listError, setListError] = useState<string | null>(null);
  const [uploads, setUploads] = useState<UploadRow[]>([]);
  const [busy, setBusy] = useState(false);
  const [dragging, setDragging] = useState(false);
  const [reloads, setReloads] = useState(0);
  const id = useId();

  const refresh = useCallback(() => setReloads((n) => n + 1), []);

  useEffect(() => {
    let live = true;
    listDocuments(config.gatewayUrl, apiKey, collection).then(
      (documents) => {
        if (!live) return;
        setDocs(documents);
        setListError(null);
      },
      (e: unknown) => {
        if (!live) return;
        setListError(
          e instanceof ApiError && e.status === 404
            ? "This server has no documents API (GET /v1/documents answered 404)."
            : e instanceof Error
              ? e.message
              : String(e),
        );
      },
    );
    return () => {
      live = false;
    };
  }, [apiKey, collection, reloads]);

  const patch = (rowId: number, change: Partial<UploadRow>) =>
    setUploads((rows) => rows.map((r) => (r.id === rowId ? { ...r, ...change } : r)));

  const upload = async (files: File[]) => {
    if (!files.length || busy) return;
    const base = Date.now();
    const rows: UploadRow[] = files.map((f, i) => ({
      id: base + i,
      name: f.name,
      size: f.size,
      progress: 0,
      state: "waiting",
      chunks: 0,
      error: null,
    }));
    setUploads((old) => [...rows, ...old].slice(0, 50));
    setBusy(true);
    for (const [i, file] of files.entries()) {
      const row = rows[i];
      patch(row.id, { state: "uploading" });
      try {
        const result = await uploadFile(config.gatewayUrl, loadApiKey(), file, collection, (fraction) =>
          patch(row.id, { progress: fraction, state: fraction >= 1 ? "processing" : "uploading" }),
        );
        patch(row.id, {
          progress: 1,
          state: result.status,
          chunks: result.chunks,
          error: result.error ? result.error.message : null,
        });
      } catch (e) {
        patch(row.id, { state: "failed", error: e instanceof Error ? e.message : String(e) });
      }
    }
    setBusy(false);
    refresh();
  };

  const remove = async (doc: DocumentInfo) => {
    if (!window.confirm(`Remove “${doc.title || doc.source}” and its ${doc.chunks} passages?`)) return;
    try {
      await deleteDocument(config.gatewayUrl, loadApiKey(), doc.id);
    } catch (e) {
      setListError(e instanceof Error ? e.message : String(e));
    }
    refresh();
  };

  return (
    <div className="app">
      <AppHeader current="documents">
        <ApiKeySettings
          apiKey={apiKey}
          onSave={setApiKey}
        />
      </AppHeader>
      <main className="documents">
        <h1>Documents</h1>
        <section className="card" aria-labelledby={`${id}-upload`}>
          <h2 id={`${id}-upload`}>Add documents</h2>
          <div
            className={dragging ? "dropzone dropzone-active" : "dropzone"}
            onDragOver={(e) => {
              e.preventDefault();
              setDragging(true);
            }}
            onDragLeave={() => setDragging(false)}
            onDrop={(e) => {
              e.preventDefault();
              setDragging(false);
              void upload(Array.from(e.dataTransfer.files));
            }}
          >
            <label htmlFor={`${id}-files`}>Choose files (Markdown, text, HTML or PDF), or drop them here</label>
            <input
              id={`${id}-files`}
              data-testid="upload-input"
              type="file"
              multiple
              accept={ACCEPT}
              disabled={busy}
              onChange={(e) => {
                const files = Array.from(e.currentTarget.files ?? []);
                e.currentTarget.value = "";
                void upload(files);
              }}
            />
          </div>
          <div className="collection-field">
            <label htmlFor={`${id}-collection`}>Collection</label>
            <input
              id={`${id}-collection`}
              data-testid="collection"
              value={collectionDraft}
              onChange={(e) => setCollectionDraft(e.target.value)}
              onBlur={applyCollection}
              onKeyDown={(e) => {
                if (e.key === "Enter") applyCollection();
              }}
              aria-describedby={`${id}-collection-help`}
            />
            <span id={`${id}-collection-help`} className="hint">
              Press Enter to show it; uploads go there.
            </span>
          </div>
          {uploads.length ? (
            <ul className="uploads" aria-label="Uploads" data-testid="uploads">
              {uploads.map((u) => (
                <li key={u.id} data-testid="upload" data-state={u.state} data-name={u.name}>
                  <div className="upload-head">
                    <span className="upload-name">{u.name}</span>
                    <span className="upload-size">{formatSize(u.size)}</span>
                    <span className={`upload-state upload-${u.state}`}>
                      {u.state === "ingested"
                        ? `added, ${u.chunks} ${u.chunks === 1 ? "passage" : "passages"}`
                        : u.state === "unchanged"
                          ? "already up to date"
                          : u.state === "processing"
                            ? "reading and indexing…"
                            : u.state}
                    </span>
                  </div>
                  <progress max={1} value={u.progress} aria-label={`Upload of ${u.name}`} />
                  {u.error ? (
                    <p className="upload-error" role="alert" data-testid="upload-error">
                      {u.error}
                    </p>
                  ) : null}
                </li>
              ))}
            </ul>
          ) : null}
        </section>

        <section className="card" aria-labelledby={`${id}-list`}>
          <div className="list-head">
            <h2 id={`${id}-list`}>In “{collection}”</h2>
            <button type="button" onClick={refresh}>
              Refresh
            </button>
          </div>
          {listError ? (
            <p className="banner banner-error" role="alert" data-testid="documents-error">
              {listError}
            </p>
          ) : null}
          {docs === null && !listError ? <p className="hint">Loading…</p> : null}
          {docs && docs.length === 0 ? <p className="hint">No documents yet.</p> : null}
          {docs && docs.length ? (
            <div className="table-wrap">
              <table className="doc-table" data-testid="documents">
                <thead>
                  <tr>
                    <th scope="col">Title</th>
                    <th scope="col">Source</th>
                    <th scope="col">Format</th>
                    <th scope="col" className="num">
                      Passages
                    </th>
                    <th scope="col">Updated</th>
                    <th scope="col">
                      <span className="sr-only">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {docs.map((d) => (
                    <tr key={d.id} data-testid="document" data-id={d.id}>
                      <td>{d.title || "(untitled)"}</td>
                      <td className="source-cell">{d.source}</td>
                      <td>{d.format}</td>
                      <td className="num">{d.chunks}</td>
                      <td>{formatDate(d.updated_at)}</td>
                      <td>
                        <button
                          type="button"
                          className="link-button"
                          onClick={() => void remove(d)}
                          aria-label={`Remove ${d.title || d.source}`}
                        >
                          Remove
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </section>
      </main>
    </div>
  );
}
