// Reading a config file: the edge between the file system and the pure validator.

import { readFileSync } from 'node:fs';
import { parseConfig, type Config } from './config.js';
import { ConfigFileError } from './errors.js';

/** Read and validate FILE. Throws ConfigFileError (unreadable, not JSON) or ConfigError. */
export function readConfigFile(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const detail =
      e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory, not a file' : e.message;
    throw new ConfigFileError(file, detail);
  }
  return parseConfig(text, file);
}
