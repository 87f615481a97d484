/**
 * Files written so that a crash never leaves a half-written one: the helper every
 * writer of run dirs, model dirs, vocabularies and reports shares. It belongs to no
 * layer's format, so it lives on its own at the bottom of lib/.
 */

import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import * as fs from 'node:fs/promises';
import * as nodePath from 'node:path';

/**
 * Writes chunks to `path` so that readers (and a crash at any moment) see
 * either the complete old file or the complete new file, never a mix:
 *
 *   1. write everything to a temporary file in the same directory
 *      (same directory = same filesystem, so the rename below is atomic);
 *   2. fsync it, so its contents are on disk before it gets the real name;
 *   3. rename it over the target;
 *   4. fsync the directory, so the rename itself is durable.
 *
 * If anything fails before the rename, the temporary file is removed, the
 * existing target is left untouched, and the error is rethrown.
 * Strings are written as UTF-8. The parent directory is created if missing.
 */
export async function writeFileAtomic(
  path: string,
  chunks: Iterable<Buffer | Uint8Array | string>,
): Promise<void> {
  const dir = nodePath.dirname(path);
  const tmpPath = nodePath.join(
    dir,
    `.${nodePath.basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`,
  );
  await fs.mkdir(dir, { recursive: true });

  // 'wx' = create, and fail if a file of that name somehow already exists.
  const handle = await fs.open(tmpPath, 'wx');
  let closeAttempted = false;
  try {
    let position = 0;
    for (const chunk of chunks) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      if (!(bytes instanceof Uint8Array)) {
        throw new TypeError(`writeFileAtomic(${path}): chunks must be Buffer, Uint8Array or string, got ${typeof chunk}`);
      }
      // write() may write fewer bytes than asked (e.g. >2 GB chunks), so loop.
      let written = 0;
      while (written < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written, position);
        written += bytesWritten;
        position += bytesWritten;
      }
    }
    await handle.sync();
    closeAttempted = true;
    await handle.close();
    await fs.rename(tmpPath, path);
  } catch (err) {
    if (!closeAttempted) await handle.close().catch(() => {});
    await fs.rm(tmpPath, { force: true }).catch(() => {});
    throw err;
  }

  await fsyncDirectory(dir);
}

/**
 * Makes a rename in `dir` durable. Some platforms and filesystems (Windows,
 * some network mounts) cannot open or fsync a directory; there is nothing
 * more we can do there, so those specific errors are ignored.
 */
async function fsyncDirectory(dir: string): Promise<void> {
  const unsupported = new Set(['EINVAL', 'EISDIR', 'EPERM', 'EACCES', 'ENOTSUP', 'EBADF']);
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    if (!unsupported.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await handle?.close().catch(() => {});
  }
}
