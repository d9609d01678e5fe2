import Testing
@testable import TickwireFeeds

/// The gap tracker fed with hand-picked times: no sockets, no sleeping.
@Suite struct MoldUDP64GapTrackerTests {
    static let ms: Int64 = 1_000_000
    let limits = MoldUDP64GapTracker.Limits(requestDelayNanos: 2 * ms, retryIntervalNanos: 50 * ms, gapTimeoutNanos: 250 * ms,
                                            maxMessagesPerRequest: 256, maxOutstanding: 64)

    func spans(_ t: MoldUDP64GapTracker) -> [ClosedRange<UInt64>] { t.ranges.map { $0.first...($0.end - 1) } }

    @Test func packetsInOrderOpenNothing() {
        var t = MoldUDP64GapTracker(limits: limits)
        t.received(1, 5, now: 0); t.received(5, 9, now: 1); t.received(9, 9, now: 2)   // the last a heartbeat
        #expect(t.isEmpty && t.frontier == 9 && t.gapsDetected == 0)
        #expect(t.requestsDue(now: 1_000 * Self.ms).isEmpty)
        #expect(t.giveUp(at: 9, now: 1_000 * Self.ms) == nil)
    }

    @Test func aJumpOpensARangeAndAFillSplitsItKeepingItsClock() {
        var t = MoldUDP64GapTracker(limits: limits)
        t.received(1, 5, now: 0)
        t.received(20, 25, now: 10 * Self.ms)                 // 5...19 missing, seen at 10 ms
        #expect(spans(t) == [5...19])
        t.received(10, 12, now: 30 * Self.ms)                 // 10, 11 arrive out of order
        #expect(spans(t) == [5...9, 12...19])
        #expect(t.ranges.allSatisfy { $0.firstSeen == 10 * Self.ms && $0.confirmed == 10 * Self.ms })
        #expect(t.gapsDetected == 1)
        t.received(5, 10, now: 31 * Self.ms); t.received(12, 20, now: 31 * Self.ms)
        #expect(t.isEmpty)
    }

    @Test func everyOpenGapIsRequestedAtOnceAfterTheDelayThenEveryRetryInterval() {
        var t = MoldUDP64GapTracker(limits: limits)
        var next: UInt64 = 1
        for i in 0..<26 {                                      // 26 gaps of 3, each after 5 received
            t.received(next, next + 5, now: Int64(i) * Self.ms); next += 8
        }
        t.received(next, next + 1, now: 26 * Self.ms)
        #expect(t.ranges.count == 26)
        #expect(t.requestsDue(now: 26 * Self.ms).count == 24)  // the last two were seen under 2 ms ago: too soon
        #expect(t.requestsDue(now: 28 * Self.ms).map(\.first) == [next - 11, next - 3])
        #expect(t.requestsDue(now: 60 * Self.ms).isEmpty)      // all outstanding
        let again = t.requestsDue(now: 76 * Self.ms)
        #expect(again.count == 24 && again.allSatisfy { $0.count == 3 })
        #expect(t.requestsSent == 50)
        #expect(t.ranges.first!.requests == 2 && t.ranges.last!.requests == 1)
    }

    @Test func outstandingRequestsAreBoundedLowestFirst() {
        var t = MoldUDP64GapTracker(limits: .init(requestDelayNanos: 0, retryIntervalNanos: 50 * Self.ms, gapTimeoutNanos: 250 * Self.ms,
                                                  maxMessagesPerRequest: 256, maxOutstanding: 3))
        for i in 0..<5 { t.received(UInt64(i * 10 + 5), UInt64(i * 10 + 10), now: 0) }   // gaps 1-4, 10-14, 20-24, 30-34, 40-44
        #expect(t.requestsDue(now: 0).map(\.first) == [1, 10, 20])
        #expect(t.requestsDue(now: 1).isEmpty)
        t.received(10, 15, now: 2)                                                          // one answered: room for one more
        #expect(t.requestsDue(now: 3).map(\.first) == [30])
        #expect(t.requestsDue(now: 50 * Self.ms).map(\.first) == [1, 20])                   // retries; 30 is still out, 40 waits
    }

    @Test func aLongGapIsRequestedInU16BoundedPiecesAndGivenUpAsOneRange() {
        var t = MoldUDP64GapTracker(limits: .init(requestDelayNanos: 0, retryIntervalNanos: 50 * Self.ms, gapTimeoutNanos: 250 * Self.ms,
                                                  maxMessagesPerRequest: 65_534, maxOutstanding: 64))
        t.received(200_001, 200_002, now: 0)
        let r = t.requestsDue(now: 0)
        #expect(r.map(\.first) == [1, 65_535, 131_069, 196_603])
        #expect(r.map(\.count) == [65_534, 65_534, 65_534, 3_398])
        #expect(t.giveUp(at: 1, now: 250 * Self.ms) == 1...200_000)
        #expect(t.isEmpty)
    }

    @Test func eachGapGivesUpAtItsOwnTimeoutInSequence() {
        var t = MoldUDP64GapTracker(limits: limits)
        t.received(1, 5, now: 0)
        t.received(10, 12, now: 0)                            // 5...9 seen at 0
        t.received(20, 22, now: 100 * Self.ms)                // 12...19 seen at 100 ms
        #expect(t.giveUp(at: 5, now: 249 * Self.ms) == nil)
        #expect(t.giveUp(at: 5, now: 250 * Self.ms) == 5...9)
        #expect(t.giveUp(at: 12, now: 349 * Self.ms) == nil)
        #expect(t.giveUp(at: 12, now: 350 * Self.ms) == 12...19)
        #expect(t.isEmpty)
    }

    @Test func aRangeNotAtTheDeliveryPointIsNotGivenUp() {
        var t = MoldUDP64GapTracker(limits: limits)
        t.received(1, 5, now: 0); t.received(10, 12, now: 0)
        #expect(t.giveUp(at: 3, now: 1_000 * Self.ms) == nil)   // 3 and 4 not yet delivered: the handler is behind
    }

    @Test func aMalformedDatagramsRangeIsRequestedButGivenUpOnlyOnceConfirmed() {
        var t = MoldUDP64GapTracker(limits: limits)
        t.received(1, 5, now: 0)
        t.announced(5, 9, now: 10 * Self.ms)                  // a bad datagram announced 5...8
        #expect(spans(t) == [5...8] && t.ranges[0].confirmed == nil)
        #expect(t.requestsDue(now: 12 * Self.ms).map(\.first) == [5])
        #expect(t.giveUp(at: 5, now: 10_000 * Self.ms) == nil)  // perhaps a garbage count: nothing says 5...8 exist
        t.received(9, 10, now: 20_000 * Self.ms)               // now they do
        #expect(t.giveUp(at: 5, now: 20_249 * Self.ms) == nil)
        #expect(t.giveUp(at: 5, now: 20_250 * Self.ms) == 5...8)
    }

    @Test func aGarbageAnnouncedCountIsConfirmedOnlyAsFarAsGoodTrafficReaches() {
        var t = MoldUDP64GapTracker(limits: limits)
        t.received(1, 5, now: 0)
        t.announced(5, 5 + 4_000, now: 0)
        t.received(5, 100, now: 1 * Self.ms)                   // the real stream goes on
        #expect(t.ranges.first?.first == 100)
        #expect(t.giveUp(at: 100, now: 10_000 * Self.ms) == nil)
        t.received(100, 100, now: 2 * Self.ms)                 // end of session at 100: the rest never existed
        t.discard(from: 100)
        #expect(t.isEmpty)
    }

    @Test func nothingIsDueWhenNothingIsOpen() {
        var t = MoldUDP64GapTracker(limits: limits)
        #expect(t.nextDeadline == nil)
        t.received(3, 4, now: 0)
        #expect(t.nextDeadline == 2 * Self.ms)
    }
}
