-- 0003: the PDF page each chunk starts on, for citations (NULL for formats without pages).
-- The section a chunk belongs to is its heading_path (0001).

ALTER TABLE chunks ADD COLUMN page integer;
ALTER TABLE chunks ADD CONSTRAINT chunks_page_check CHECK (page IS NULL OR page >= 1);
