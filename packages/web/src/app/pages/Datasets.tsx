import type { DatasetVersion } from '@ratchet/core';
import { useState } from 'react';
import { download } from '../api.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

export function DatasetsPage() {
  const list = useApi<{ items: DatasetVersion[] }>('/datasets');
  const [selected, setSelected] = useState<string>();
  return (
    <Page title="Datasets">
      <Loading state={list} what="datasets">
        {(d) => (
          <Table
            caption="Dataset versions, newest first"
            head={['Dataset', 'Version', 'Method', 'Rows', 'Built', 'Content hash', 'Deleted since', '']}
            rows={d.items.map((v) => [
              v.name,
              `v${v.version}`,
              v.method,
              v.rowCount,
              fmt.time(v.createdAt),
              <code key="h">{v.contentHash.slice(0, 12)}</code>,
              v.dataDeletedAt
                ? `${v.deletedInteractions} interactions, ${v.deletedRows} rows (${fmt.time(v.dataDeletedAt)})`
                : 'nothing',
              <button
                key="b"
                type="button"
                onClick={() => setSelected(v.id)}
                aria-label={`Show ${v.name} v${v.version}`}
              >
                Show
              </button>,
            ])}
          />
        )}
      </Loading>
      {selected && <DatasetDetail id={selected} />}
    </Page>
  );
}

function DatasetDetail({ id }: { id: string }) {
  const version = useApi<DatasetVersion>(`/datasets/${encodeURIComponent(id)}`);
  const rows = useApi<{ items: { row: unknown; lineage: unknown }[]; total: number }>(
    `/datasets/${encodeURIComponent(id)}/rows?limit=10`,
  );
  const [error, setError] = useState('');
  return (
    <Loading state={version} what="dataset">
      {(v) => (
        <section aria-label={`${v.name} v${v.version}`}>
          <h2>
            {v.name} v{v.version}
          </h2>
          <button
            type="button"
            onClick={() =>
              download(`/dashboard/datasets/${v.id}/export`, `${v.name}-v${v.version}.jsonl`).catch(
                (e: Error) => setError(e.message),
              )
            }
          >
            Export rows (JSON lines)
          </button>
          {error && <p role="alert">{error}</p>}
          <h3>Lineage</h3>
          <p>
            Built by the {v.method} builder from calibration {v.calibrationId ?? '–'}; each row below names
            the interactions and feedback it came from.
          </p>
          <pre>{JSON.stringify(v.spec, null, 2)}</pre>
          <h3>Manifest</h3>
          <pre>{JSON.stringify(v.manifest, null, 2).slice(0, 4000)}</pre>
          <h3>Sample rows</h3>
          <Loading state={rows} what="rows">
            {(r) => (
              <Table
                caption={`First ${r.items.length} of ${r.total} rows`}
                head={['Row', 'Lineage']}
                rows={r.items.map((x) => [
                  <pre key="r">{JSON.stringify(x.row).slice(0, 400)}</pre>,
                  <pre key="l">{JSON.stringify(x.lineage).slice(0, 300)}</pre>,
                ])}
              />
            )}
          </Loading>
        </section>
      )}
    </Loading>
  );
}
