import TickwireCore

/// Input a file source read to its end but could not use: an empty file, a file with no message in it.
/// The message names the file and what was found.
public struct FeedInputError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A source that, under `on_error = "skip"`, may have stepped over bad input, and says so once it has run.
///
/// Skipping keeps a session going past damage; it must not make damage look like a clean run. A caller that
/// owns the process (`tickwire decode`) prints the summary and exits non-zero; the counters
/// (`errors`, `skipped_bytes`, `skipped_messages`, CSV `errors`) show the same in `tickwire stats`.
public protocol SkipReporting: AnyObject {
    /// nil when nothing was skipped; else one line naming the source, how much was skipped and the first error
    /// (what and where).
    var skipSummary: String? { get }
}

/// The first skipped error and the summary of a run, written by the source's thread when it returns and read
/// by any thread afterwards.
final class SkipLog: Sendable {
    private let state = Locked<String?>(nil)
    init() {}
    func set(_ summary: String?) { state.withLock { $0 = summary } }
    var summary: String? { state.withLock { $0 } }
}
