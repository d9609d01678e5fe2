#if canImport(Glibc)
import Glibc
#endif

/// The lines of a JSON-lines file (`tickwire trade submit --file`), read in large blocks.
public enum TradeFile {
    /// Bytes read at a time (a block holds about ten thousand trade lines; a longer line grows it).
    public static let blockBytes = 1 << 20

    /// Reads `fd` to its end and hands each line (without its `\n`) to `body` with its 1-based number; a last line
    /// without a newline counts too.
    /// - Parameter beforeRead: called before each read (which, from a pipe, waits for the writer): a caller sends
    ///   what it holds of the lines so far there.
    /// - Warning: the line's bytes are valid only during the call.
    /// - Throws: `TradeInputError` when a read fails, or what `body` or `beforeRead` throws.
    public static func forEachLine(fd: Int32, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void,
                                   beforeRead: () throws -> Void = {}) throws {
        var buffer = [UInt8](repeating: 0, count: blockBytes)
        var filled = 0, number = 0
        while true {
            try beforeRead()
            if filled == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }   // one line fills the block
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TradeInputError("cannot read: \(String(cString: strerror(errno)))")
            }
            let end = filled + n
            let consumed = try buffer.withUnsafeBufferPointer { b in
                var start = 0
                while start < end, let nl = memchr(b.baseAddress! + start, 0x0a, end - start) {
                    let stop = UnsafeRawPointer(nl) - UnsafeRawPointer(b.baseAddress!)
                    number += 1
                    try body(UnsafeBufferPointer(rebasing: b[start..<stop]), number)
                    start = stop + 1
                }
                if n == 0 && start < end {   // the end of the input: a last line without a newline
                    number += 1
                    try body(UnsafeBufferPointer(rebasing: b[start..<end]), number)
                    start = end
                }
                return start
            }
            if n == 0 { return }
            // The unfinished line moves to the front; the next read completes it.
            if consumed > 0 {
                buffer.withUnsafeMutableBytes { b in _ = memmove(b.baseAddress!, b.baseAddress! + consumed, end - consumed) }
            }
            filled = end - consumed
        }
    }
}
