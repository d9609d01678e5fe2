import Foundation
import Testing
import TickwireCore
@testable import TickwireJournal

/// Segments written into files prepared with zeros ahead of time, and what recovery makes of them after a crash:
/// trailing zeros are unused space, a hole of zero sectors inside the last group commit is a torn tail, and any
/// other damage is still corruption in the middle.
@Suite struct PreExtensionTests {
    /// 64 KiB segments: the next one is prepared once a segment holds 16 KiB.
    static let options = JournalOptions(segmentBytes: 64 << 10, indexEvery: 8)
    static let recordBytes = JournalFormat.recordHeaderSize + 100

    /// Appends at least `count` records of 100 bytes, 50 at a time, each batch waited for (as trades arrive),
    /// and goes on until the last segment is pre-extended and holds `lastSegmentRecords`; closes. Returns where
    /// each record starts.
    /// - Parameter unacknowledged: the last this-many records are appended as one group commit that a crash keeps
    ///   from being acknowledged (the ack mark is put back as it was before them).
    static func write(_ dir: String, count: Int, lastSegmentRecords: Int = 0, unacknowledged: Int = 0,
                      options: JournalOptions = options) throws -> [(segment: String, offset: Int64)] {
        let j = try Journal(directory: dir, options: options)
        var n = 0
        while true {
            for _ in 0..<50 { n += 1; _ = try j.append(payload(n), eventTime: Nanos(Int64(n))) }
            try j.waitDurable(UInt64(n))
            guard n >= count else { continue }
            if lastSegmentRecords == 0 { break }
            var places: [String] = []
            try JournalAudit.forEach(directory: dir) { places.append($0.segment) }
            let inLast = places.count { $0 == places.last }
            // Room left in the last segment for the unacknowledged commit, so that it does not roll.
            let fits = (inLast + unacknowledged + 2) * recordBytes + JournalFormat.segmentHeaderSize <= Int(options.segmentBytes)
            if j.writingPreExtended && inLast >= lastSegmentRecords && fits { break }
        }
        j.close()
        if unacknowledged > 0 {
            try holdingBackAckMark(dir) {
                let j = try Journal(directory: dir, options: options)
                for _ in 0..<unacknowledged { n += 1; _ = try j.append(payload(n), eventTime: Nanos(Int64(n))) }
                try j.waitDurable(UInt64(n))
                j.close()
            }
        }
        var places: [(String, Int64)] = []
        try JournalAudit.forEach(directory: dir) { places.append(($0.segment, $0.offset)) }
        return places
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }

    static func rewrite(_ path: String, _ change: (inout Data) -> Void) throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        change(&bytes)
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    @Test func segmentsArePreExtendedAndReopeningContinuesAfterTheLastRecord() throws {
        let dir = TempDir("prext")
        let j = try Journal(directory: dir.path, options: Self.options)
        var n = 0
        func add() throws { n += 1; _ = try j.append(payload(n), eventTime: .zero) }
        for _ in 0..<300 {
            for _ in 0..<10 { try add() }
            try j.waitDurable(UInt64(n))
        }
        // However the rolls fell against the preparer (a loaded machine slows it), the journal ends up writing a
        // prepared segment: the first record after one is ready rolls into it.
        let deadline = Date().addingTimeInterval(20)
        while !j.writingPreExtended && Date() < deadline {
            usleep(2000)
            try add()
            try j.waitDurable(UInt64(n))
        }
        #expect(j.writingPreExtended)
        #expect(j.preparedSegments.prepared >= 1 && j.preparedSegments.failed == 0)
        j.close()
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/" + Journal.preparedName))
        let files = segmentFiles(dir.path)
        #expect(files.count >= 5)
        // The first segment appended until a prepared file was ready, then rolled early; the last is a prepared,
        // whole-size file.
        #expect(Self.fileSize(dir.path + "/" + files[0]) < 64 << 10)
        #expect(Self.fileSize(dir.path + "/" + files.last!) == 64 << 10)

        let again = try Journal(directory: dir.path, options: Self.options)
        #expect(again.recovery.records == n && again.recovery.truncatedBytes == 0)
        #expect(try again.appendDurably(payload(n + 1), eventTime: .zero) == UInt64(n + 1))
        for seq in [1, 2, 500, 1234, 2999, n, n + 1] {
            #expect(try again.record(UInt64(seq)).payload == payload(seq), "seq \(seq)")
        }
        #expect(try again.records(from: 1, limit: n + 10).map(\.seq) == Array(1...UInt64(n + 1)))
        again.close()
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.ok && v.records == n + 1 && v.tornTailBytes == 0)
    }

    /// The kernel wrote back a later page of the last group commit but not an earlier one: zeros, then records.
    @Test func aZeroHoleInsideTheLastGroupCommitIsATornTail() throws {
        let dir = TempDir("hole")
        let places = try Self.write(dir.path, count: 1000, lastSegmentRecords: 40, unacknowledged: 60)
        let lastSegment = places.last!.segment
        let inLast = places.enumerated().filter { $0.element.segment == lastSegment }
        #expect(inLast.count > 60)
        // A 4 KiB page from the middle of the last (unacknowledged) group commit's records.
        let page = (places[places.count - 55].offset + 4095) / 4096 * 4096
        let firstHit = inLast.first { $0.element.offset + Int64(Self.recordBytes) > page }!.offset
        #expect(places.last!.offset > page + 4096)   // whole records follow the hole
        let path = dir.path + "/" + lastSegment
        try Self.rewrite(path) { b in b.replaceSubrange(Int(page)..<Int(page) + 4096, with: Data(count: 4096)) }

        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.ok && v.records == firstHit && v.tornTailBytes > 4096)
        let j = try Journal(directory: dir.path, options: Self.options)
        #expect(j.recovery.records == firstHit && j.recovery.skippedCorruption == nil)
        #expect(j.recovery.truncatedBytes == places.last!.offset + Int64(Self.recordBytes) - places[firstHit].offset)
        #expect(try j.appendDurably(payload(9), eventTime: .zero) == UInt64(firstHit + 1))
        j.close()
        #expect(try JournalAudit.verify(directory: dir.path).records == firstHit + 1)
    }

    /// The last group commit (never acknowledged) torn where a device can tear it: at its start and at every
    /// sector boundary inside it, the rest left as the zeros of the prepared file. A run of zeros that starts
    /// elsewhere inside a record is no write that stopped short: corruption, even past the acknowledged records.
    @Test func aTornLastCommitBeforeTheZerosIsCut() throws {
        let source = TempDir("torn-prext")
        let places = try Self.write(source.path, count: 700, lastSegmentRecords: 2, unacknowledged: 8)
        let unacked = places.suffix(8)
        let name = unacked.first!.segment
        #expect(unacked.allSatisfy { $0.segment == name })
        let start = Int(unacked.first!.offset), end = Int(places.last!.offset) + Self.recordBytes
        let full = try Data(contentsOf: URL(fileURLWithPath: source.path + "/" + name))
        #expect(full.count == 64 << 10)
        func copy(zeroing range: Range<Int>) throws -> TempDir {
            let dir = TempDir("torn-prext-cut")
            for other in segmentFiles(source.path) + ["acked.mark"] where other != name {
                try FileManager.default.copyItem(atPath: source.path + "/" + other, toPath: dir.path + "/" + other)
            }
            var bytes = full
            bytes.replaceSubrange(range, with: Data(count: range.count))
            try bytes.write(to: URL(fileURLWithPath: dir.path + "/" + name))
            return dir
        }
        let cuts = [start] + stride(from: (start + 511) / 512 * 512, to: end, by: 512)
        #expect(cuts.count >= 3)
        for cut in cuts {
            let dir = try copy(zeroing: cut..<end)
            let whole = places.filter { $0.segment != name || Int($0.offset) + Self.recordBytes <= cut }.count
            let j = try Journal(directory: dir.path, options: Self.options)
            #expect(j.recovery.records == whole, "cut at \(cut)")
            #expect(try j.appendDurably([1], eventTime: .zero) == UInt64(whole + 1), "cut at \(cut)")
            j.close()
            #expect(try JournalAudit.verify(directory: dir.path).ok)
        }
        let victim = Int(unacked[unacked.startIndex + 3].offset)
        let dir = try copy(zeroing: victim + 77..<victim + Self.recordBytes)
        #expect(throws: JournalError.self) { try Journal(directory: dir.path, options: Self.options) }
    }

    /// Non-zero damage near the end is never a write that had not happened yet: still corruption.
    @Test func aBitFlipInThePreExtendedTailIsCorruption() throws {
        let dir = TempDir("flip-prext")
        let places = try Self.write(dir.path, count: 700, lastSegmentRecords: 10)
        let victim = places[places.count - 5]
        try Self.rewrite(dir.path + "/" + victim.segment) { b in b[Int(victim.offset) + 70] ^= 0x01 }
        do {
            _ = try Journal(directory: dir.path, options: Self.options)
            Issue.record("opened past a bit flip")
        } catch {
            guard case .corrupt(let c) = error else { Issue.record("\(error)"); return }
            #expect(c.seq == UInt64(places.count - 4) && c.offset == victim.offset && c.segment == victim.segment)
        }
    }

    /// A hole of zeros with more than one group commit's worth of records after it cannot be an unsynced write:
    /// records after it had been acknowledged, so it is corruption, named by sequence and offset.
    @Test func aZeroHoleFurtherBackThanOneGroupCommitIsCorruption() throws {
        let dir = TempDir("deep-hole")
        var options = JournalOptions()
        options.preExtendSegments = false
        let count = Journal.maxUnsyncedBytes / Self.recordBytes + 2000
        let places = try Self.write(dir.path, count: count, options: options)
        #expect(Set(places.map(\.segment)).count == 1)
        let page = (places[1000].offset + 4095) / 4096 * 4096
        let firstHit = places.firstIndex { $0.offset + Int64(Self.recordBytes) > page }!
        try Self.rewrite(dir.path + "/" + places[0].segment) { b in
            b.replaceSubrange(Int(page)..<Int(page) + 4096, with: Data(count: 4096))
        }
        do {
            _ = try Journal(directory: dir.path, options: options)
            Issue.record("opened past a hole in acknowledged records")
        } catch {
            guard case .corrupt(let c) = error else { Issue.record("\(error)"); return }
            #expect(c.seq == UInt64(firstHit + 1) && c.offset == places[firstHit].offset)
        }
        #expect(try JournalAudit.verify(directory: dir.path).corruption?.seq == UInt64(firstHit + 1))
    }
}
