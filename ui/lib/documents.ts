/**
 * The documents API (`/v1/documents`): list, upload (one request per file, so each file has its
 * own progress and its own error), delete.
 */

import { ApiError, authHeaders, errorFromResponse, gatewayUrl } from "./api";
import { describeError } from "./protocol";

export interface DocumentInfo {
  id: number;
  title: string;
  source: string;
  collection: string;
  format: string;
  chunks: number;
  updated_at: string;
}

export interface UploadResult {
  filename: string;
  status: "ingested" | "unchanged" | "failed";
  document_id: number | null;
  chunks: number;
  error: { code: string; message: string } | null;
}

const UNREACHABLE = "Cannot reach the Voicebot server: the documents API did not answer.";

export async function listDocuments(base: string, apiKey: string, collection: string): Promise<DocumentInfo[]> {
  let response: Response;
  try {
    response = await fetch(gatewayUrl(base, `/v1/documents?collection=${encodeURIComponent(collection)}`), {
      headers: authHeaders(apiKey),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", UNREACHABLE);
  }
  if (!response.ok) throw await errorFromResponse(response);
  const body = (await response.json()) as { documents?: DocumentInfo[] };
  return body.documents ?? [];
}

export async function deleteDocument(base: string, apiKey: string, id: number): Promise<void> {
  let response: Response;
  try {
    response = await fetch(gatewayUrl(base, `/v1/documents/${id}`), { method: "DELETE", headers: authHeaders(apiKey) });
  } catch {
    throw new ApiError(0, "unreachable", UNREACHABLE);
  }
  if (!response.ok && response.status !== 404) throw await errorFromResponse(response);
}

/** The error text of an HTTP error body, from a raw XHR response. */
function errorFromText(status: number, text: string): ApiError {
  let code = status === 413 ? "too_large" : status === 401 ? "unauthorized" : "internal";
  let detail: string | undefined;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") detail = body.error.message;
  } catch {
    // not JSON
  }
  if (code === "too_large") {
    return new ApiError(status, code, `The file is larger than the server accepts.${detail ? ` (${detail})` : ""}`);
  }
  return new ApiError(status, code, describeError(code, detail));
}

/** Upload one file; `onProgress` gets the fraction sent (0..1). Resolves with the file's result. */
export function uploadFile(
  base: string,
  apiKey: string,
  file: File,
  collection: string,
  onProgress: (fraction: number) => void,
): Promise<UploadResult> {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("files", file, file.name);
    if (collection) form.append("collection", collection);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", gatewayUrl(base, "/v1/documents"));
    for (const [name, value] of Object.entries(authHeaders(apiKey))) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError(0, "unreachable", UNREACHABLE));
    xhr.onload = () => {
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(errorFromText(xhr.status, xhr.responseText));
        return;
      }
      try {
        const body = JSON.parse(xhr.responseText) as { results?: UploadResult[] };
        const result = body.results?.find((r) => r.filename === file.name) ?? body.results?.[0];
        if (!result) throw new Error("no result");
        onProgress(1);
        resolve(result);
      } catch {
        reject(new ApiError(xhr.status, "internal", describeError("internal")));
      }
    };
    xhr.send(form);
  });
}
