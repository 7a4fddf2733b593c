-- Marking a row published must fit its new version on the same page to be a heap-only (HOT)
-- update, and every row on a page gets marked. At fillfactor 70 only ~half did (measured: 8.6M
-- HOT of 17.7M updates); the rest took a new page, wrote entries in every index and left dead
-- index entries for autovacuum (~32 s per run on a 17M-row ledger). A claimed row is ~273
-- bytes and its published version ~297, so a page may be filled to at most 273/570 = 48%
-- before marking; at 45 every update measured was HOT (1,040,008 of 1,040,008), the WAL of a
-- 1M-record ingest fell from 0.8 to 0.55 GiB, and the heap grows ~0.5 GB per 1M rows as before.
ALTER TABLE ledger SET (fillfactor = 45);
