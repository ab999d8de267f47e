// A crash's frames: the app's own first, library frames apart, from `exception.frames` or the traceback text.

// Installed packages, the standard library and frozen modules: the frames a developer rarely needs first.
const LIBRARY_PATH = /[\\/](?:site|dist)-packages[\\/]|[\\/]lib[\\/]python\d+(?:\.\d+)?[\\/]|^<frozen |^<string>$/;
const FRAME_LINE = /^\s*File "(.*)", line (\d+), in (.*)$/;
const MARKERS = /^\s*[\^~\s]+$/; // Python 3.11's column markers under the code line

export function isLibraryFile(file) {
  return LIBRARY_PATH.test(String(file ?? ""));
}

// The package a library frame belongs to (`anyio`, `fastapi`, …), for the folded summary.
export function packageOf(file) {
  const match = /[\\/](?:site|dist)-packages[\\/]([^\\/]+)/.exec(String(file ?? ""));
  if (match) return match[1].replace(/\.py$/, "");
  return "Python";
}

// Frames parsed from Python's traceback text (the `File "…", line N, in f` lines and the code under them).
export function parseTraceback(text) {
  const lines = String(text ?? "").split("\n");
  const frames = [];
  for (let i = 0; i < lines.length; i++) {
    const match = FRAME_LINE.exec(lines[i]);
    if (!match) continue;
    const following = lines[i + 1];
    const code = following !== undefined && !FRAME_LINE.test(following) && !MARKERS.test(following) && /^\s{4}/.test(following) ? following.trim() : "";
    frames.push({ file: match[1], line: Number(match[2]), function: match[3], code, library: isLibraryFile(match[1]) });
  }
  return frames;
}

export function framesOf(exception) {
  if (Array.isArray(exception?.frames) && exception.frames.length) {
    return exception.frames
      .filter((frame) => frame && typeof frame === "object")
      .map((frame) => ({
        file: String(frame.file ?? ""),
        line: frame.line == null ? null : Number(frame.line),
        function: String(frame.function ?? ""),
        code: String(frame.code ?? ""),
        library: typeof frame.library === "boolean" ? frame.library : isLibraryFile(frame.file),
      }));
  }
  return parseTraceback(exception?.traceback);
}
