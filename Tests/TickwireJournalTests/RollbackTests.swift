import Foundation
import Testing
import TickwireCore
@testable import TickwireJournal

/// `Journal.rollBack`: a replica cut back to the last record its log kept, every later record kept in quarantine.
@Suite(.timeLimit(.minutes(5))) struct RollbackTests {
    static let options = JournalOptions(segmentBytes: 4096, indexEvery: 8)

    /// A journal of `count` records over several 4 KiB segments, and each record's hash.
    static func filled(_ dir: String, count: Int) throws -> [RecordHash] {
        let j = try Journal(directory: dir, options: options)
        defer { j.close() }
        for i in 1...count { _ = try j.append(payload(i), eventTime: Nanos(Int64(i))) }
        try j.waitDurable(UInt64(count))
        return try (1...count).map { try j.record(UInt64($0)).hash }
    }

    /// Every cut point: mid-segment, a segment's last record, a segment's first, the whole journal, nothing.
    @Test(arguments: [37, 0, 1, 99, 100])
    func cutsBackToARecordAndTheChainGoesOn(keep: Int) throws {
        let dir = TempDir("rollback")
        let hashes = try Self.filled(dir.path, count: 100)
        let segmentsBefore = segmentFiles(dir.path)
        let moved = try Journal.rollBack(directory: dir.path, through: UInt64(keep))
        #expect(moved.isEmpty == (keep == 100))
        // Nothing deleted: each segment is still in the journal or in quarantine.
        let quarantined = (try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/quarantine")) ?? []
        for name in segmentsBefore {
            #expect(segmentFiles(dir.path).contains(name) || quarantined.contains { $0.hasPrefix(name) }, "\(name) lost")
        }
        // It opens at `keep` without a word of damage (the ack mark vouches for exactly that), and goes on.
        let j = try Journal(directory: dir.path, options: Self.options)
        #expect(j.durableSequence == UInt64(keep))
        #expect(j.recovery.skippedCorruption == nil && j.recovery.lostAcknowledged == nil)
        if keep > 0 { #expect(try j.record(UInt64(keep)).hash == hashes[keep - 1]) }
        let next = try j.append(payload(1000), eventTime: Nanos(1000))
        try j.waitDurable(next)
        #expect(next == UInt64(keep) + 1)
        #expect(try j.record(next).prevHash == (keep == 0 ? .zero : hashes[keep - 1]))
        j.close()
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.corruption == nil && v.lastSeq == next, "\(v)")
    }

    @Test func aCutPastTheEndChangesNothing() throws {
        let dir = TempDir("rollback")
        _ = try Self.filled(dir.path, count: 10)
        #expect(try Journal.rollBack(directory: dir.path, through: 10).isEmpty)
        #expect(try Journal.rollBack(directory: dir.path, through: 50).isEmpty)
        let j = try Journal(directory: dir.path, options: Self.options)
        #expect(j.durableSequence == 10)
        j.close()
    }
}
