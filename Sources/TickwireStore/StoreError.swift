/// Why a store operation failed. Every case names the file or the query part at fault and what was wrong.
public enum StoreError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A system call failed: `operation` on `path` gave `errno`.
    case io(operation: String, path: String, errno: Int32)
    /// A stored file does not hold what its format says, at byte `offset`.
    case corrupt(path: String, offset: Int, reason: String)
    /// A query was malformed: a bad time, pattern or range; `field` names the argument.
    case badQuery(field: String, reason: String)
    /// An event the store cannot keep (an empty subject table entry, a time outside the calendar range).
    case badEvent(reason: String)

    public var description: String {
        switch self {
        case .io(let op, let path, let e): "\(op) '\(path)' failed: \(String(cString: strerror(e))) (errno \(e))"
        case .corrupt(let path, let off, let why): "'\(path)' is corrupt at byte \(off): \(why)"
        case .badQuery(let field, let why): "bad query: \(field): \(why)"
        case .badEvent(let why): "event not stored: \(why)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
