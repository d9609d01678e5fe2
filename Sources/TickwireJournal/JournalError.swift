#if canImport(Glibc)
import Glibc
#endif

/// Where and why a journal's bytes are not what was written.
public struct JournalCorruption: Sendable, Equatable, CustomStringConvertible {
    /// The segment file (name within the journal directory).
    public var segment: String
    /// The byte offset in that file where the bad record (or header) starts.
    public var offset: Int64
    /// The sequence expected at that position (the bad record's, when its own field cannot be trusted).
    public var seq: UInt64
    public var reason: String

    public var description: String { "record seq \(seq) at \(segment) byte offset \(offset): \(reason)" }
}

/// A journal failure, naming what and where.
public enum JournalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system call failed: which, on what path, and errno.
    case io(operation: String, path: String, errno: Int32)
    /// The device is full or the file size limit was reached (ENOSPC, EFBIG, EDQUOT). Nothing after the last
    /// durable record was acknowledged, and the file was cut back to it.
    case diskFull(path: String, errno: Int32)
    /// A record in the middle is damaged or the chain is broken; the journal will not go past it unless opened
    /// with `CorruptionPolicy.truncate`.
    case corrupt(JournalCorruption)
    /// An earlier write or sync failed; the journal accepts nothing more until it is reopened.
    case stopped(after: String)
    case closed
    case payloadTooLarge(bytes: Int)
    case invalidCursorName(String)
    case cursorFile(path: String, reason: String)
    /// The sequence is not in the journal (below the first or above the last durable record).
    case noSuchRecord(seq: UInt64)

    public var description: String {
        switch self {
        case .io(let op, let path, let e): "\(op) \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .diskFull(let path, let e): "disk full writing \(path): \(String(cString: strerror(e))) (errno \(e)); nothing unwritten was acknowledged"
        case .corrupt(let c): "journal corrupt: \(c)"
        case .stopped(let why): "journal stopped after an earlier failure: \(why)"
        case .closed: "journal is closed"
        case .payloadTooLarge(let n): "payload of \(n) bytes exceeds \(JournalFormat.maxPayload)"
        case .invalidCursorName(let n): "invalid cursor name '\(n)': use [A-Za-z0-9_-], 1 to 64 characters"
        case .cursorFile(let path, let why): "cursor file \(path): \(why)"
        case .noSuchRecord(let seq): "no record with sequence \(seq)"
        }
    }

    static func fromErrno(_ op: String, _ path: String, _ e: Int32 = errno) -> JournalError {
        if e == ENOSPC || e == EFBIG || e == EDQUOT { return .diskFull(path: path, errno: e) }
        return .io(operation: op, path: path, errno: e)
    }
}
