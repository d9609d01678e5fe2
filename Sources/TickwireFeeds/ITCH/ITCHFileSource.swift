import TickwireCore

/// Replays a NASDAQ ITCH 5.0 BinaryFILE (`12302019.NASDAQ_ITCH50`) from a memory map as Tickwire events.
///
/// Known time: a file is history, so each event is known at its event time — replaying a capture reproduces
/// what a live handler would have published, with the same two times every run. (A live MoldUDP64 feed stamps
/// the receive clock instead.)
public final class ITCHFileSource: EventSource {
    public let path: String
    public let clock: EasternClock
    public let policy: ErrorPolicy
    public let depthLevels: Int
    public var name: String { "itch:\(path.split(separator: "/").last.map(String.init) ?? path)" }
    let board = CounterBoard()

    /// - Throws: `FeedConfigError` when no trading date is configured and the file name carries none.
    public init(path: String, options: FeedOptions = FeedOptions()) throws(FeedConfigError) {
        self.path = path
        guard let date = options.date ?? TradingDate.fromNASDAQFileName(path) ?? TradingDate.fromISOInFileName(path) else {
            throw FeedConfigError("no trading date for '\(path)': name it like 12302019.NASDAQ_ITCH50 or pass --date YYYY-MM-DD")
        }
        clock = EasternClock(date: date)
        policy = options.errorPolicy
        depthLevels = options.depthLevels
    }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let file = try MappedFile(path: path)
        let normalizer = ITCHNormalizer(sink: sink, clock: clock)
        normalizer.depthLevels = depthLevels
        defer { board.publish(normalizer.counts.pairs()) }
        try ITCHFileSource.replay(file.bytes, into: normalizer, policy: policy, stop: stop) { [board] in
            board.publish($0.counts.pairs())
        }
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }

    /// Feeds every BinaryFILE message of `buffer` to `normalizer`, publishing counters every 64Ki messages.
    /// - Throws: the first `ITCHError` when `policy` is `.stop`; with `.skip` errors are counted and skipped.
    public static func replay(_ buffer: UnsafeRawBufferPointer, into normalizer: ITCHNormalizer, policy: ErrorPolicy,
                              stop: StopSignal, publish: (ITCHNormalizer) -> Void) throws(ITCHError) {
        var reader = BinaryFILEReader(buffer)
        var sincePublish = 0
        while true {
            do {
                guard let m = try reader.next() else { break }
                normalizer.handle(m)
            } catch {
                normalizer.counts.record(error)
                if policy == .stop { throw error }
                reader.skipBadFrame()
            }
            sincePublish &+= 1
            if sincePublish == 1 << 16 {
                sincePublish = 0
                publish(normalizer)
                if stop.isRaised { return }
            }
        }
    }
}
