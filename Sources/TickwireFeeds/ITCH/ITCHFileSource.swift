import TickwireCore

/// Replays a NASDAQ ITCH 5.0 BinaryFILE (`12302019.NASDAQ_ITCH50`) from a memory map as Tickwire events.
///
/// Known time: a file is history, so each event is known at its event time — replaying a capture reproduces
/// what a live handler would have published, with the same two times every run. (A live MoldUDP64 feed stamps
/// the receive clock instead.)
///
/// Bad input: with `ErrorPolicy.stop` the first bad frame ends the run with its `ITCHError`; with `.skip` the
/// reader resynchronises (`BinaryFILEReader.skipBadFrame()`), counts what it stepped over, and `skipSummary`
/// says so afterwards. A file with no ITCH message in it (empty, or nothing but damage) is a `FeedInputError`
/// under either policy.
public final class ITCHFileSource: EventSource, SkipReporting {
    public let path: String
    public let clock: EasternClock
    public let policy: ErrorPolicy
    public let depthLevels: Int
    public var name: String { "itch:\(path.split(separator: "/").last.map(String.init) ?? path)" }
    let board = CounterBoard()
    let skipLog = SkipLog()

    /// - Throws: `FeedConfigError` when no trading date is configured and the file name carries none.
    public init(path: String, options: FeedOptions = FeedOptions()) throws(FeedConfigError) {
        self.path = path
        guard let date = options.date ?? TradingDate.fromNASDAQFileName(path) ?? TradingDate.fromISOInFileName(path) else {
            throw FeedConfigError("no trading date for '\(path)': name it like 12302019.NASDAQ_ITCH50, or \(FeedOptions.howToSetDate)")
        }
        clock = EasternClock(date: date)
        policy = options.errorPolicy
        depthLevels = options.depthLevels
    }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let file = try MappedFile(path: path)
        if file.bytes.isEmpty { throw FeedInputError("no ITCH messages in '\(path)': the file is empty") }
        let normalizer = ITCHNormalizer(sink: sink, clock: clock)
        normalizer.depthLevels = depthLevels
        defer { board.publish(normalizer.counts.pairs()) }
        let firstSkipped = try ITCHFileSource.replay(file.bytes, into: normalizer, policy: policy, stop: stop, letGo: file.letGo) { [board] in
            board.publish($0.counts.pairs())
        }
        let c = normalizer.counts
        let first = firstSkipped.map { "; first: \($0)" } ?? ""
        if c.messages == 0 && !stop.isRaised {
            throw FeedInputError("no ITCH messages in '\(path)': \(file.bytes.count) bytes, none framed as ITCH 5.0 BinaryFILE "
                                 + "(\(c.errorCount) bad frames, \(c.skippedBytes) bytes skipped\(first))")
        }
        if c.errorCount > 0 {
            skipLog.set("\(name): \(c.errorCount) bad frames skipped (\(c.skippedBytes) bytes, \(c.skippedMessages) damaged "
                        + "messages); \(c.messages) messages read\(first)")
        }
    }

    public var skipSummary: String? { skipLog.summary }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }

    /// A mapped file: it never waits for input.
    public var flushesSink: Bool { true }

    /// Feeds every BinaryFILE message of `buffer` to `normalizer`, publishing counters every 64Ki messages.
    /// - Parameter letGo: for a mapped file (`MappedFile.letGo`), called with what has been read, every 32 MiB.
    /// - Returns: the first error skipped under `.skip` (nil when none was).
    /// - Throws: the first `ITCHError` when `policy` is `.stop`; with `.skip` errors are counted and skipped, and
    ///   the bytes and messages stepped over are counted in `normalizer.counts`.
    @discardableResult
    public static func replay(_ buffer: UnsafeRawBufferPointer, into normalizer: ITCHNormalizer, policy: ErrorPolicy,
                              stop: StopSignal, letGo: ((Range<Int>) -> Void)? = nil,
                              publish: (ITCHNormalizer) -> Void) throws(ITCHError) -> ITCHError? {
        var firstSkipped: ITCHError?
        var reader = BinaryFILEReader(buffer)
        var sincePublish = 0, released = 0
        while true {
            do {
                guard let m = try reader.next() else { break }
                normalizer.handle(m)
            } catch {
                normalizer.counts.record(error)
                if policy == .stop { throw error }
                if firstSkipped == nil { firstSkipped = error }
                let skipped = reader.skipBadFrame()
                normalizer.counts.skippedBytes &+= UInt64(skipped.bytes)
                normalizer.counts.skippedMessages &+= UInt64(skipped.messages)
            }
            sincePublish &+= 1
            if sincePublish == 1 << 16 {
                sincePublish = 0
                publish(normalizer)
                if stop.isRaised { return firstSkipped }
                if let letGo, reader.offset - released >= 32 << 20 {
                    letGo(released..<reader.offset)
                    released = reader.offset
                }
            }
        }
        return firstSkipped
    }
}
