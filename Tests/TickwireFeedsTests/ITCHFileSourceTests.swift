import Testing
import TickwireCore
@testable import TickwireFeeds

@Suite struct ITCHFileSourceTests {
    @Test func sliceReplaysWithCountersAndTheDateFromConfiguration() throws {
        #expect(try ITCHFileSource(path: Fixture.itchSlice).clock.date.description == "2019-12-30")   // YYYYMMDD in the name
        #expect(throws: FeedConfigError.self) { try ITCHFileSource(path: Fixture.zeroPrefix) }       // no date in the name
        let named = Fixture.scratch("12302019.NASDAQ_ITCH50", Fixture.bytes(Fixture.itchSlice))
        let fromName = try ITCHFileSource(path: named)
        #expect(fromName.clock.date.description == "2019-12-30")
        let source = try ITCHFileSource(path: Fixture.itchSlice, options: FeedOptions(date: try TradingDate(parsing: "2019-12-30")))
        let sink = try collect(source)
        #expect(counter(source, "messages") == 1000)
        #expect(counter(source, "messages.A") == 367 && counter(source, "messages.C") == 1)
        #expect(counter(source, "unknown_orders") == 399 && counter(source, "errors") == 0)
        #expect(counter(source, "events.trade") == 6)
        #expect(sink.events.count == Int(counter(source, "events.trade") + counter(source, "events.quote") + counter(source, "events.status")))
        #expect(try collect(fromName).events == sink.events)
    }

    @Test func malformedFileStopsWithTheOffsetOrSkipsAndCounts() throws {
        let date = try TradingDate(parsing: "2010-12-24")
        let stopping = try ITCHFileSource(path: Fixture.zeroPrefix, options: FeedOptions(date: date))
        #expect(throws: ITCHError(offset: 0, problem: .zeroLengthPrefix)) { try collect(stopping) }
        #expect(counter(stopping, "errors.zero_length_prefix") == 1)
        // Skipping counts every frame, and a file that held no message at all is still an error.
        let skipping = try ITCHFileSource(path: Fixture.zeroPrefix, options: FeedOptions(date: date, errorPolicy: .skip))
        let sink = CollectingSink()
        #expect(throws: FeedInputError.self) { try skipping.run(into: sink, stop: StopSignal()) }
        #expect(sink.events.isEmpty)
        #expect(counter(skipping, "errors") == 12_012 && counter(skipping, "messages") == 0)
    }

    /// A file of ~70 MB, read through its mapping with the pages read let go every 32 MiB, gives exactly the
    /// events its bytes give from memory (where nothing is let go).
    @Test func aFileLetGoAsItIsReadGivesTheEventsOfItsBytes() throws {
        let slice = Fixture.bytes(Fixture.itchSlice)
        let bytes = [[UInt8]](repeating: slice, count: 2_000).flatMap { $0 }
        let path = Fixture.scratch("12302019.NASDAQ_ITCH50", bytes)
        let fromFile = try collect(try ITCHFileSource(path: path, options: FeedOptions(errorPolicy: .skip)))
        let inMemory = CollectingSink()
        let normalizer = ITCHNormalizer(sink: inMemory, clock: EasternClock(date: try TradingDate(parsing: "2019-12-30")))
        try bytes.withUnsafeBytes { buffer in
            do { try ITCHFileSource.replay(buffer, into: normalizer, policy: .skip, stop: StopSignal()) { _ in } } catch { throw error }
        }
        #expect(bytes.count > 64 << 20 && fromFile.events.count > 10_000)
        #expect(fromFile.events == inMemory.events)
    }
}
