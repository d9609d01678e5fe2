import Foundation
import Testing
import TickwireCore
@testable import TickwireJournal

/// Damage at the end of the journal, where it used to pass for a torn tail: the ack mark says how far the journal
/// acknowledged, and nothing at or before it is ever cut without the operator's word.
@Suite struct AckMarkTests {
    /// 64 KiB segments: a few hundred records make several, the last one pre-extended.
    static let options = JournalOptions(segmentBytes: 64 << 10, indexEvery: 8)
    static let recordBytes = JournalFormat.recordHeaderSize + 100

    /// `count` acknowledged records, 50 a commit, and more until the last segment holds `lastSegmentRecords`
    /// (where the rolls fall depends on when the preparer is done); returns them.
    static func write(_ dir: String, count: Int, lastSegmentRecords: Int = 0) throws -> [JournalRecord] {
        let j = try Journal(directory: dir, options: options)
        var records: [JournalRecord] = []
        var n = 0
        repeat {
            for _ in 0..<50 {
                n += 1
                _ = try j.append(payload(n), eventTime: Nanos(Int64(n)))
            }
            try j.waitDurable(UInt64(n))
            records = try j.records(from: 1, limit: n)
        } while n < count || records.count { $0.segment == records.last!.segment } < lastSegmentRecords
        j.close()
        records = []
        try JournalAudit.forEach(directory: dir) { records.append($0) }
        #expect(records.count == n)
        return records
    }

    static func rewrite(_ path: String, _ change: (inout Data) -> Void) throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        change(&bytes)
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    /// Opening must refuse, naming the damage; returns it.
    static func refused(_ dir: String) -> JournalCorruption? {
        do {
            let j = try Journal(directory: dir, options: options)
            j.close()
            Issue.record("opened past damage to acknowledged records")
            return nil
        } catch {
            guard case .corrupt(let c) = error else { Issue.record("\(error)"); return nil }
            return c
        }
    }

    /// The operator's repair: the records before the damage stay, the lost acknowledged range is reported, a copy
    /// is in quarantine/, and new records continue from the last good one.
    static func repairKeeps(_ dir: String, _ kept: Int, lost: ClosedRange<UInt64>) throws {
        var opts = options
        opts.onCorruption = .truncate
        let j = try Journal(directory: dir, options: opts)
        #expect(j.recovery.records == kept && j.recovery.lostAcknowledged == lost)
        #expect(j.recovery.skippedCorruption != nil)
        #expect(try j.appendDurably(payload(9), eventTime: .zero) == UInt64(kept + 1))
        j.close()
        let again = try Journal(directory: dir, options: options)
        #expect(again.recovery.records == kept + 1 && again.recovery.skippedCorruption == nil)
        again.close()
        #expect(try JournalAudit.verify(directory: dir).ok)
    }

    @Test func marksFollowCommitsAndCloseWritesTheLast() throws {
        let dir = TempDir("mark")
        let j = try Journal(directory: dir.path, options: Self.options)
        #expect(try AckMark.read(directory: dir.path).mark?.seq == 0)
        _ = try j.appendDurably(payload(1), eventTime: .zero)
        // After a lone commit the mark follows at once (no interval to wait out).
        let deadline = Date().addingTimeInterval(10)
        while j.ackMarkState.marked < 1 && Date() < deadline { usleep(1000) }
        #expect(j.ackMarkState.marked == 1)
        #expect(try AckMark.read(directory: dir.path).mark?.seq == 1)
        for n in 2...500 { _ = try j.append(payload(n), eventTime: .zero) }
        try j.waitDurable(500)
        // Commits made while the marker rests after a mark do not wake it; it marks them when its rest is over.
        while j.ackMarkState.marked < 500 && Date() < deadline { usleep(1000) }
        #expect(j.ackMarkState.marked == 500)
        j.close()
        let mark = try #require(try AckMark.read(directory: dir.path).mark)
        let head = try JournalAudit.show(directory: dir.path, seq: 500)?.hash
        #expect(mark.seq == 500 && mark.hash == head)
        #expect(try JournalAudit.verify(directory: dir.path).ackMark == .valid(mark))
    }

    @Test func aFlippedByteInTheLastAcknowledgedRecordIsCorruption() throws {
        let dir = TempDir("mark-flip")
        let records = try Self.write(dir.path, count: 600)
        let last = records.last!
        try Self.rewrite(dir.path + "/" + last.segment) { $0[Int(last.offset) + 100] ^= 0x20 }
        let c = try #require(Self.refused(dir.path))
        #expect(c.seq == last.seq && c.segment == last.segment && c.offset == last.offset)
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(!v.ok && v.lostAcknowledged == last.seq...last.seq)
        try Self.repairKeeps(dir.path, Int(last.seq) - 1, lost: last.seq...last.seq)
    }

    @Test func aZeroedSectorBeforeTheEndIsCorruption() throws {
        let dir = TempDir("mark-sector")
        let records = try Self.write(dir.path, count: 900, lastSegmentRecords: 60)
        let segment = records.last!.segment, end = records.last!.seq
        let inLast = records.filter { $0.segment == segment }
        // A sector a little way before the end: well inside one unsynced group commit's reach, so without the mark
        // it passed for a torn tail.
        let sector = (inLast[inLast.count - 30].offset + 511) / 512 * 512
        let firstHit = records.first { $0.segment == segment && $0.offset + Int64(Self.recordBytes) > sector }!
        try Self.rewrite(dir.path + "/" + segment) { $0.replaceSubrange(Int(sector)..<Int(sector) + 512, with: Data(count: 512)) }
        let c = try #require(Self.refused(dir.path))
        #expect(c.seq == firstHit.seq && c.offset == firstHit.offset)
        #expect(try JournalAudit.verify(directory: dir.path).lostAcknowledged == firstHit.seq...end)
        try Self.repairKeeps(dir.path, Int(firstHit.seq) - 1, lost: firstHit.seq...end)
    }

    @Test func aLastSegmentCutShortIsCorruption() throws {
        let dir = TempDir("mark-cut")
        var opts = Self.options
        opts.preExtendSegments = false
        let j = try Journal(directory: dir.path, options: opts)
        for n in 1...300 { _ = try j.appendDurably(payload(n), eventTime: .zero) }
        j.close()
        let records = try JournalAudit.tail(directory: dir.path, count: 300)
        let victim = records[279]
        let path = dir.path + "/" + victim.segment
        try Self.rewrite(path) { $0 = $0.prefix(Int(victim.offset) + 30) }
        let c = try #require(Self.refused(dir.path))
        #expect(c.seq == 280 && c.segment == victim.segment && c.offset == victim.offset)
        #expect(c.reason.contains("280…300 were acknowledged"))
        try Self.repairKeeps(dir.path, 279, lost: 280...300)
    }

    @Test func aDeletedLastSegmentIsCorruption() throws {
        let dir = TempDir("mark-deleted")
        let records = try Self.write(dir.path, count: 900)
        let last = records.last!.segment
        #expect(segmentFiles(dir.path).count >= 3)
        let firstLost = records.first { $0.segment == last }!.seq
        try FileManager.default.removeItem(atPath: dir.path + "/" + last)
        let c = try #require(Self.refused(dir.path))
        #expect(c.segment == last && c.seq == firstLost && c.reason.contains("missing"))
        // Every reader says so too, not only the daemon.
        #expect(throws: JournalError.self) { try JournalAudit.forEach(directory: dir.path) { _ in } }
        #expect(throws: JournalError.self) { try JournalAudit.show(directory: dir.path, seq: 900) }
        try Self.repairKeeps(dir.path, Int(firstLost) - 1, lost: firstLost...900)
    }

    /// `audit export`, `tail` and `show` read up to the damage and then fail, naming it: never a prefix that
    /// passes for the whole journal.
    @Test func readersFailLoudlyOnDamage() throws {
        let dir = TempDir("mark-readers")
        let records = try Self.write(dir.path, count: 600)
        let victim = records[49]   // in the first segment, which holds at least its first 16 KiB
        try Self.rewrite(dir.path + "/" + victim.segment) { $0[Int(victim.offset) + 90] ^= 0x01 }
        var seen = 0
        do {
            try JournalAudit.forEach(directory: dir.path) { _ in seen += 1 }
            Issue.record("forEach ended quietly at the damage")
        } catch {
            guard case .corrupt(let c) = error else { Issue.record("\(error)"); return }
            #expect(c.seq == 50 && c.offset == victim.offset && c.segment == victim.segment)
        }
        #expect(seen == 49)
        #expect(throws: JournalError.self) { try JournalAudit.forEach(directory: dir.path, from: 400) { _ in } }
        #expect(throws: JournalError.self) { try JournalAudit.tail(directory: dir.path, count: 5) }
        #expect(throws: JournalError.self) { try JournalAudit.show(directory: dir.path, seq: 50) }
        // `show` reads one segment: an intact record in a later one is still shown.
        let later = try #require(records.first { $0.segment > victim.segment })
        #expect(try JournalAudit.show(directory: dir.path, seq: later.seq)?.seq == later.seq)
        #expect(try JournalAudit.show(directory: dir.path, seq: 10)?.seq == 10)
    }

    /// Without a mark (a journal from before marks, or the file removed) no damage passes for a torn tail; an
    /// intact journal opens and gets one.
    @Test func withoutAMarkNothingIsCut() throws {
        let dir = TempDir("mark-missing")
        let records = try Self.write(dir.path, count: 200)
        try FileManager.default.removeItem(atPath: dir.path + "/acked.mark")
        do {
            let j = try Journal(directory: dir.path, options: Self.options)
            #expect(j.recovery.ackMark == .missing && j.recovery.records == 200)
            j.close()
        }
        #expect(try AckMark.read(directory: dir.path).mark?.seq == 200)
        try FileManager.default.removeItem(atPath: dir.path + "/acked.mark")
        let last = records.last!
        try Self.rewrite(dir.path + "/" + last.segment) {
            $0.replaceSubrange(Int(last.offset) + 70..<Int(last.offset) + Self.recordBytes, with: Data(count: Self.recordBytes - 70))
        }
        let c = try #require(Self.refused(dir.path))
        #expect(c.seq == 200 && c.reason.contains("no ack mark"))
    }

    /// Each slot is one sector: a torn or damaged slot leaves the other, older mark.
    @Test func aDamagedSlotFallsBackToTheOtherAndBothDamagedIsReported() throws {
        let dir = TempDir("mark-slots")
        _ = try Self.write(dir.path, count: 100)
        let before = try #require(try AckMark.read(directory: dir.path).mark)
        let slot = Int(before.generation % 2) * AckMark.slotSize
        try Self.rewrite(dir.path + "/acked.mark") { $0[slot + 20] ^= 0xff }
        let older = try #require(try AckMark.read(directory: dir.path).mark)
        #expect(older.generation == before.generation - 1 && older.seq <= before.seq)
        try Self.rewrite(dir.path + "/acked.mark") { $0[AckMark.slotSize - slot + 20] ^= 0xff }
        guard case .damaged(let why) = try AckMark.read(directory: dir.path) else { Issue.record("not damaged"); return }
        #expect(why.contains("acked.mark"))
        // The records are whole: the journal opens and writes a fresh mark.
        let j = try Journal(directory: dir.path, options: Self.options)
        #expect(j.recovery.records == 100)
        j.close()
        #expect(try AckMark.read(directory: dir.path).mark?.seq == 100)
    }
}

/// Opening from a checkpoint: only the segments after it (and the mark's) are read at open; the rest are checked
/// by the verifier thread, which reports damage without stopping the journal.
@Suite struct CheckpointOpenTests {
    static let options = JournalOptions(segmentBytes: 64 << 10, indexEvery: 8)

    static func write(_ dir: String, count: Int) throws {
        let j = try Journal(directory: dir, options: options)
        for n in 1...count {
            _ = try j.append(payload(n), eventTime: Nanos(Int64(n)))
            if n % 100 == 0 || n == count { try j.waitDurable(UInt64(n)) }
        }
        j.close()
    }

    static func waitVerified(_ j: Journal) {
        let deadline = Date().addingTimeInterval(20)
        while !j.fullyVerified && j.backgroundDamage == nil && Date() < deadline { usleep(2000) }
    }

    @Test func openReadsOnlyWhatFollowsTheCheckpointAndTheRestIsVerifiedBehind() throws {
        let dir = TempDir("ckpt")
        try Self.write(dir.path, count: 3000)
        let segments = segmentFiles(dir.path).count
        #expect(segments >= 6)
        let replayed = SeqCollector()
        let j = try Journal(directory: dir.path, options: Self.options, replayFrom: 2950) { replayed.add($0.seq) }
        // Every segment wholly before record 2950 (by the next one's first sequence) is left to the verifier.
        let firsts = segmentFiles(dir.path).compactMap { JournalFormat.firstSeq(segmentName: $0) }
        let deferred = zip(firsts, firsts.dropFirst()).filter { $0.1 <= 2950 }.count
        #expect(j.recovery.records == 3000 && j.recovery.deferredSegments == deferred && deferred >= segments - 2)
        #expect(replayed.values == Array(2950...3000))
        // Records in segments not read at open are found before the verifier has indexed them, and after.
        #expect(try j.record(5).payload == payload(5))
        Self.waitVerified(j)
        #expect(j.fullyVerified && j.backgroundDamage == nil)
        for seq in [1, 2, 77, 1500, 2999, 3000] { #expect(try j.record(UInt64(seq)).payload == payload(seq)) }
        #expect(try j.records(from: 1, limit: 5000).map(\.seq) == Array(1...3000))
        #expect(try j.appendDurably(payload(3001), eventTime: .zero) == 3001)
        j.close()
        #expect(try JournalAudit.verify(directory: dir.path).records == 3001)
    }

    @Test func damageBeforeTheCheckpointIsReportedInTheBackgroundAndRefusedByAFullOpen() throws {
        let dir = TempDir("ckpt-damage")
        try Self.write(dir.path, count: 3000)
        var records: [JournalRecord] = []
        try JournalAudit.forEach(directory: dir.path) { records.append($0) }
        let victim = records[700]
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + victim.segment))
        bytes[Int(victim.offset) + 80] ^= 0x04
        try bytes.write(to: URL(fileURLWithPath: dir.path + "/" + victim.segment))

        let reported = SeqCollector()
        var options = Self.options
        options.onDamage = { reported.add($0.seq) }
        let j = try Journal(directory: dir.path, options: options, replayFrom: 2950)
        Self.waitVerified(j)
        let damage = try #require(j.backgroundDamage)
        #expect(damage.seq == 701 && damage.segment == victim.segment && damage.offset == victim.offset)
        #expect(reported.values == [701] && !j.fullyVerified)
        // Appending goes on: the damage is in the past, and reported.
        #expect(try j.appendDurably(payload(3001), eventTime: .zero) == 3001)
        j.close()
        #expect(throws: JournalError.self) { try Journal(directory: dir.path, options: Self.options) }
    }
}

@Suite struct FailedRollTests {
    /// A group commit that rolls a segment and fails after its first part was written and synced (the new file
    /// cannot be made): the journal afterwards holds exactly what was reported durable — the synced part is
    /// durable and reported so, nothing past it is left to be found as journaled-but-refused.
    @Test func aRollThatFailsLeavesExactlyWhatWasReportedDurable() throws {
        for trial in 0..<5 {
            let dir = TempDir("failed-roll")
            var options = JournalOptions(segmentBytes: 4096)
            options.preExtendSegments = false
            let j = try Journal(directory: dir.path, options: options)
            // 24 records of 164 bytes fill the first segment; the 25th rolls into seg-…25, whose name a directory takes.
            try FileManager.default.createDirectory(atPath: dir.path + "/" + JournalFormat.segmentName(firstSeq: 25),
                                                    withIntermediateDirectories: false)
            for n in 1...20 { _ = try j.appendDurably(payload(n), eventTime: .zero) }
            // Appended back to back, so that one commit holds records before the roll and after it.
            var appended: UInt64 = 20
            for n in 21...30 { guard let seq = try? j.append(payload(n), eventTime: .zero) else { break }; appended = seq }
            #expect(throws: JournalError.self) { try j.waitDurable(appended) }
            let durable = j.durableSequence
            j.close()
            #expect(durable >= 20 && durable <= 24, "trial \(trial)")
            try FileManager.default.removeItem(atPath: dir.path + "/" + JournalFormat.segmentName(firstSeq: 25))
            let v = try JournalAudit.verify(directory: dir.path)
            #expect(v.ok && v.lastSeq == durable, "trial \(trial): durable \(durable), journal holds \(v.lastSeq)")
        }
    }
}
