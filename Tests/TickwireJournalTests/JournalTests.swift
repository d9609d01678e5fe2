import CTickwireSys
import Foundation
import Testing
import TickwireCore
@testable import TickwireJournal

/// A fresh directory under /tmp, removed when the test ends.
final class TempDir {
    let path: String
    init(_ tag: String = "journal") {
        var template = Array("/tmp/tw-\(tag)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func payload(_ i: Int, size: Int = 100) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: i &* 31 &+ $0) }
}

func segmentFiles(_ dir: String) -> [String] {
    (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.hasPrefix("seg-") }.sorted() ?? []
}

@Suite struct JournalTests {
    @Test func crc32cMatchesTheStandardCheckValueAndTheTablePath() {
        let check = Array("123456789".utf8)
        #expect(check.withUnsafeBytes { crc32c($0) } == 0xE306_9283)
        // Lengths about the three-chain blocks of 3 × 256 and 3 × 8192 bytes, and several of them.
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 767, 768, 769, 1000, 24_575, 24_576, 24_577, 24_576 + 768 + 13, 100_003] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
            let hw = bytes.withUnsafeBytes { crc32c($0) }
            let sw = bytes.withUnsafeBytes { tw_crc32c_sw(0, $0.baseAddress, $0.count) }
            #expect(hw == sw, "length \(n)")
            // Continuing over two halves gives the CRC of the whole.
            let split = bytes.withUnsafeBytes { b in crc32c(UnsafeRawBufferPointer(rebasing: b[(n / 2)...]), continuing: crc32c(UnsafeRawBufferPointer(rebasing: b[..<(n / 2)]))) }
            #expect(split == hw)
        }
    }

    @Test func roundTripSurvivesReopen() throws {
        let dir = TempDir()
        var head = RecordHash.zero
        do {
            let j = try Journal(directory: dir.path)
            for i in 1...500 {
                let seq = try j.appendDurably(payload(i, size: i % 200), eventTime: Nanos(Int64(i)))
                #expect(seq == UInt64(i))
            }
            head = try j.record(500).hash
            j.close()
        }
        var replayed = 0
        let j = try Journal(directory: dir.path) { r in
            replayed += 1
            #expect(r.payload == payload(Int(r.seq), size: Int(r.seq) % 200))
        }
        #expect(replayed == 500)
        #expect(j.recovery.records == 500 && j.recovery.truncatedBytes == 0)
        let r = try j.record(321)
        #expect(r.seq == 321 && r.eventTime == Nanos(321) && r.payload == payload(321, size: 121))
        #expect(try j.record(322).prevHash == r.hash)
        #expect(try j.appendDurably([1, 2, 3], eventTime: .zero) == 501)
        j.close()
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.ok && v.records == 501 && v.lastSeq == 501)
        #expect(try JournalAudit.show(directory: dir.path, seq: 500)?.hash == head)
    }

    /// With one sync thread and with two (commits overlapping, durability still published in order).
    @Test(arguments: [1, 2])
    func concurrentAppendersShareSyncsAndAllBecomeDurable(syncThreads: Int) throws {
        let dir = TempDir()
        let syncs = SyncCounter()
        let reported = SeqCollector()
        var options = JournalOptions(onDurable: { seq in syncs.add(); reported.add(seq) })
        options.syncThreads = syncThreads
        let j = try Journal(directory: dir.path, options: options)
        let threads = 8, each = 200
        let seqs = SeqCollector()
        // Real threads: concurrentPerform would run only as many at once as there are cores (2 here).
        runThreads(threads) { t in
            for i in 0..<each {
                let seq = try! j.appendDurably(payload(t * each + i), eventTime: .now())
                #expect(j.durableSequence >= seq)
                seqs.add(seq)
            }
        }
        j.close()
        let all = seqs.values.sorted()
        #expect(all == Array(1...UInt64(threads * each)))
        // Group commit: fewer syncs than records (each thread waits, so up to 8 share one).
        #expect(syncs.count < threads * each)
        // onDurable is called one at a time, and never with a sequence lower than an earlier call's.
        #expect(reported.values == reported.values.sorted() && reported.values.last == UInt64(threads * each))
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.ok && v.records == threads * each)
    }

    @Test func tornLastRecordIsCutAtEveryByteOffset() throws {
        let source = TempDir()
        do {
            let j = try Journal(directory: source.path)
            for i in 1...4 { _ = try j.appendDurably(payload(i, size: 40), eventTime: .zero) }
            j.close()
        }
        // The fifth record's commit is the one the crash tore: never acknowledged, so the mark stops at 4.
        try holdingBackAckMark(source.path) {
            let j = try Journal(directory: source.path)
            _ = try j.appendDurably(payload(5, size: 40), eventTime: .zero)
            j.close()
        }
        let name = segmentFiles(source.path)[0]
        let full = try Data(contentsOf: URL(fileURLWithPath: source.path + "/" + name))
        let recordSize = JournalFormat.recordHeaderSize + 40
        let lastStart = full.count - recordSize
        for cut in lastStart..<full.count {
            let dir = TempDir("torn")
            try full.prefix(cut).write(to: URL(fileURLWithPath: dir.path + "/" + name))
            try FileManager.default.copyItem(atPath: source.path + "/acked.mark", toPath: dir.path + "/acked.mark")
            let j = try Journal(directory: dir.path)
            #expect(j.recovery.records == 4, "cut at \(cut)")
            // Torn bytes are counted up to the last non-zero one (zeros after it may be pre-extension).
            let written = (lastStart..<cut).last { full[$0] != 0 }.map { $0 + 1 } ?? lastStart
            #expect(j.recovery.truncatedBytes == Int64(written - lastStart), "cut at \(cut)")
            #expect(try j.appendDurably([9], eventTime: .zero) == 5)
            j.close()
            #expect(try JournalAudit.verify(directory: dir.path).records == 5)
        }
    }

    @Test(arguments: [("payload", 64 + 10), ("crc", 4), ("length", 1), ("seq", 8), ("prevHash", 40)])
    func bitFlipInTheMiddleIsReportedWithSeqAndOffset(field: String, within: Int) throws {
        let dir = TempDir("flip")
        do {
            let j = try Journal(directory: dir.path)
            for i in 1...10 { _ = try j.appendDurably(payload(i, size: 50), eventTime: .zero) }
            j.close()
        }
        let name = segmentFiles(dir.path)[0]
        let path = dir.path + "/" + name
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let offset = JournalFormat.segmentHeaderSize + 4 * (JournalFormat.recordHeaderSize + 50)   // record 5
        bytes[offset + within] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: path))

        let expected = JournalCorruption(segment: name, offset: Int64(offset), seq: 5, reason: "")
        #expect(throws: JournalError.self) { _ = try Journal(directory: dir.path) }
        do {
            _ = try Journal(directory: dir.path)
        } catch {
            guard case .corrupt(let c) = error else { Issue.record("\(field): \(error)"); return }
            #expect(c.seq == expected.seq && c.offset == expected.offset && c.segment == name, "\(field): \(c)")
        }
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.corruption?.seq == 5 && v.corruption?.offset == Int64(offset) && v.records == 4)
        // Nothing was changed by the refusals.
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)

        // The operator's explicit choice: keep 1-4, quarantine the rest, continue.
        let j = try Journal(directory: dir.path, options: JournalOptions(onCorruption: .truncate))
        #expect(j.recovery.records == 4 && j.recovery.skippedCorruption?.seq == 5 && j.recovery.quarantined == [name])
        #expect(try j.appendDurably([1], eventTime: .zero) == 5)
        j.close()
        #expect(try JournalAudit.verify(directory: dir.path).ok)
    }

    @Test func indexFindsRecordsAcrossSegmentRolls() throws {
        let dir = TempDir("roll")
        let options = JournalOptions(segmentBytes: 4096, indexEvery: 8)
        do {
            let j = try Journal(directory: dir.path, options: options)
            for i in 1...1000 { _ = try j.append(payload(i, size: i % 90), eventTime: Nanos(Int64(i))) }
            try j.waitDurable(1000)
            for seq in [1, 2, 8, 9, 31, 32, 33, 500, 999, 1000] as [UInt64] {
                #expect(try j.record(seq).payload == payload(Int(seq), size: Int(seq) % 90))
            }
            #expect(try j.records(from: 990, limit: 100).map(\.seq) == Array(990...1000))
            j.close()
        }
        #expect(segmentFiles(dir.path).count > 10)
        let j = try Journal(directory: dir.path, options: options)
        for seq in stride(from: 1, through: 1000, by: 37) {
            let r = try j.record(UInt64(seq))
            #expect(r.seq == UInt64(seq))
            // The audit tool's read-only lookup finds the same record in the same place.
            #expect(try JournalAudit.show(directory: dir.path, seq: UInt64(seq)) == r)
        }
        #expect(try JournalAudit.show(directory: dir.path, seq: 5000) == nil)
        #expect(throws: JournalError.noSuchRecord(seq: 1001)) { _ = try j.record(1001) }
        #expect(try j.appendDurably([7], eventTime: .zero) == 1001)
        j.close()
        let v = try JournalAudit.verify(directory: dir.path)
        #expect(v.ok && v.records == 1001 && v.segments == segmentFiles(dir.path).count)
    }

    /// Reads parse a window of the segment (one read for many records): every record, run and lookup is the
    /// independent scan's, across segment ends (small segments: one read holds a whole one) and with records
    /// larger than the first and the largest read; a byte flipped on disk after the open is named on read, and
    /// the records before it still read.
    @Test(arguments: [8, 512])
    func readsAgreeWithTheScanAndNameDamageFoundOnRead(segmentKiB: Int) throws {
        let dir = TempDir("read")
        let j = try Journal(directory: dir.path, options: JournalOptions(segmentBytes: Int64(segmentKiB) << 10, indexEvery: 64))
        defer { j.close() }
        let large = segmentKiB > 300
        func size(_ i: Int) -> Int { large && i == 1_500 ? 300_000 : large && i % 100 == 0 ? 40_000 : i % 97 * 3 }
        let count = 3_000
        for i in 1...count { _ = try j.append(payload(i, size: size(i)), eventTime: Nanos(Int64(i))) }
        try j.waitDurable(UInt64(count))
        var scanned: [JournalRecord] = []
        try JournalAudit.forEach(directory: dir.path) { scanned.append($0) }
        #expect(scanned.count == count && segmentFiles(dir.path).count > 3)
        #expect(try j.records(from: 1, limit: count + 10) == scanned)
        for seq in stride(from: 1, through: count, by: 13) + [64, 65, 1_499, 1_500, 1_501, count] {
            #expect(try j.record(UInt64(seq)) == scanned[seq - 1])
            #expect(try j.records(from: UInt64(seq), limit: 7) == Array(scanned[(seq - 1)..<min(count, seq + 6)]))
        }
        // A payload byte of record 777, flipped where the journal cannot see it happen.
        let victim = scanned[776]
        let fd = open(dir.path + "/" + victim.segment, O_RDWR)
        var byte: UInt8 = 0
        let at = off_t(victim.offset) + off_t(JournalFormat.recordHeaderSize) + 1
        #expect(pread(fd, &byte, 1, at) == 1)
        byte ^= 0x40
        #expect(pwrite(fd, &byte, 1, at) == 1)
        close(fd)
        do {
            _ = try j.record(777)
            Issue.record("a damaged record was read")
        } catch {
            guard case .corrupt(let c) = error else { Issue.record("\(error)"); return }
            #expect(c.seq == 777 && c.segment == victim.segment && c.offset == victim.offset && c.reason.contains("CRC32C"), "\(c)")
        }
        #expect(throws: JournalError.self) { _ = try j.records(from: 770, limit: 20) }
        #expect(try j.records(from: 770, limit: 7) == Array(scanned[769..<776]))
        #expect(try j.record(778) == scanned[777])
    }

    /// `JournalLookups` keeps its segment open and its last read's bytes for the next lookup: forwards, backwards
    /// and across segment ends it finds what the scan does; and a lookup object whose window was read before later
    /// records were durable still finds them (bytes past what was durable at a read are read again, not taken
    /// from the window: there they were zeros or half written).
    @Test(arguments: [8, 512])
    func lookupsThatShareAReadAgreeWithTheScanAndSeeLaterCommits(segmentKiB: Int) throws {
        let dir = TempDir("lookups")
        let j = try Journal(directory: dir.path, options: JournalOptions(segmentBytes: Int64(segmentKiB) << 10, indexEvery: 64))
        defer { j.close() }
        let count = 2_000
        for i in 1...count { _ = try j.append(payload(i, size: i % 97 * 3), eventTime: Nanos(Int64(i))) }
        try j.waitDurable(UInt64(count))
        var scanned: [JournalRecord] = []
        try JournalAudit.forEach(directory: dir.path) { scanned.append($0) }
        #expect(scanned.count == count)
        let lookups = j.lookups()
        // In order, backwards, and scattered (a step prime to the count visits each once).
        let orders: [[Int]] = [Array(1...count), Array((1...count).reversed()), (0..<count).map { $0 * 7_919 % count + 1 }]
        for order in orders {
            for seq in order where try lookups.record(UInt64(seq)) != scanned[seq - 1] {
                Issue.record("record \(seq) differs from the scan's"); break
            }
        }
        #expect(throws: JournalError.noSuchRecord(seq: UInt64(count + 1))) { _ = try lookups.record(UInt64(count + 1)) }
        // More records, one durable commit at a time, each looked up through the same object right after.
        for i in (count + 1)...(count + 300) {
            _ = try j.appendDurably(payload(i, size: i % 97 * 3), eventTime: Nanos(Int64(i)))
            let r = try lookups.record(UInt64(i))
            #expect(r.seq == UInt64(i) && r.payload == payload(i, size: i % 97 * 3))
        }
    }

    @Test func cursorResumesAfterRestartWithNothingLostOrRepeated() throws {
        let dir = TempDir("cursor")
        do {
            let j = try Journal(directory: dir.path)
            for i in 1...100 { _ = try j.append(payload(i), eventTime: .zero) }
            try j.waitDurable(100)
            let c = try JournalCursor(journal: j, name: "risk")
            #expect(try c.next(limit: 30).map(\.seq) == Array(1...30))
            try c.commit()
            _ = try c.next(limit: 5)   // read but not committed: redelivered after restart
            j.close()
        }
        let j = try Journal(directory: dir.path)
        let c = try JournalCursor(journal: j, name: "risk")
        #expect(c.committed == 30)
        var seen: [UInt64] = []
        while true {
            let batch = try c.next(limit: 16)
            if batch.isEmpty { break }
            seen += batch.map(\.seq)
        }
        #expect(seen == Array(31...100))
        try c.commit()
        let other = try JournalCursor(journal: j, name: "booking")
        #expect(other.committed == 0)
        #expect(throws: JournalError.invalidCursorName("../x")) { _ = try JournalCursor(journal: j, name: "../x") }
        j.close()
    }

    /// A full disk, one appender (a 256 KiB tmpfs; mounting needs root, elsewhere the test is skipped, not faked).
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func fullDiskIsAClearErrorAndDamagesNothing() throws {
        try withSmallTmpfs { mount in
            let dir = mount + "/journal"
            var acked: [UInt64] = []
            var failure: JournalError?
            do {
                let j = try Journal(directory: dir, options: JournalOptions(segmentBytes: 64 << 10))
                for i in 1...10_000 {
                    do { acked.append(try j.appendDurably(payload(i, size: 200), eventTime: .zero)) } catch { failure = error as? JournalError; break }
                }
                // Once stopped, nothing more is accepted.
                #expect(throws: JournalError.self) { _ = try j.append([1], eventTime: .zero) }
                j.close()
            }
            guard case .diskFull = failure else { Issue.record("expected diskFull, got \(String(describing: failure))"); return }
            #expect(acked.count > 100)
            let v = try JournalAudit.verify(directory: dir)
            #expect(v.ok && v.records == acked.count && v.lastSeq == acked.last)
            let j = try Journal(directory: dir, options: JournalOptions(segmentBytes: 64 << 10))
            #expect(j.recovery.records == acked.count)
            for seq in acked where seq % 50 == 0 { #expect(try j.record(seq).payload == payload(Int(seq), size: 200)) }
            j.close()
        }
    }

    /// Several appenders at once on a full disk, two commits in flight when the write fails: every
    /// acknowledged record is on disk and readable, the chain verifies, and nothing else is there: a commit that
    /// succeeded beside the failed one is acknowledged, one taken after it is cut back.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func fullDiskWithConcurrentAppendersLosesNoAcknowledgedRecord() throws {
        try withSmallTmpfs { mount in
            let dir = mount + "/journal"
            let acked = SeqCollector()
            let failures = SyncCounter()
            do {
                var options = JournalOptions(segmentBytes: 64 << 10)
                options.syncThreads = 2
                // A commit lingers after its sync, so that the one beside it often fails first: a success that
                // finished after the failure was left on disk unacknowledged (1 run in 40 without the pause).
                options.onSync = { _ in usleep(300) }
                let j = try Journal(directory: dir, options: options)
                // The trade service's check, beside the appenders: once `failure` is seen, the durable sequence read
                // after it is final, and everything past it is refused. (Seen while the commit beside the failed
                // one was still in flight, it let that commit's records be refused and then found durable.)
                let refusedAbove = SeqCollector()
                let polling = Thread {
                    while true {
                        if j.failure != nil { refusedAbove.add(j.durableSequence); return }
                        sched_yield()
                    }
                }
                polling.start()
                runThreads(4) { t in
                    for i in 0..<2000 {
                        do { acked.add(try j.appendDurably(payload(t * 2000 + i, size: 200), eventTime: .zero)) } catch {
                            failures.add()
                            return
                        }
                    }
                }
                while refusedAbove.values.isEmpty { usleep(1000) }
                #expect(acked.values.allSatisfy { $0 <= refusedAbove.values[0] }, "refused above \(refusedAbove.values[0]), acknowledged up to \(acked.values.max() ?? 0)")
                #expect(j.durableSequence == refusedAbove.values[0])
                j.close()
            }
            #expect(failures.count == 4)
            let ackedSeqs = acked.values.sorted()
            #expect(ackedSeqs.count > 100 && ackedSeqs == Array(1...UInt64(ackedSeqs.count)))
            let v = try JournalAudit.verify(directory: dir)
            // Exactly the acknowledged records: one that failed was cut back, never left to be found later (a
            // commit that rolled a segment and failed after syncing its first part publishes that part as durable).
            #expect(v.ok && v.records == ackedSeqs.count)
            let j = try Journal(directory: dir, options: JournalOptions(segmentBytes: 64 << 10))
            for seq in ackedSeqs where seq % 37 == 0 { #expect(try j.record(seq).seq == seq) }
            j.close()
        }
    }

    @Test func secondOpenOfTheSameDirectoryIsRefused() throws {
        let dir = TempDir("lock")
        let j = try Journal(directory: dir.path)
        #expect(throws: JournalError.self) { _ = try Journal(directory: dir.path) }
        j.close()
    }
}

/// Runs `body` and then puts back the ack mark as it was before: what a crash leaves when the records `body`
/// appended were written but never acknowledged (the mark follows only acknowledged commits).
func holdingBackAckMark(_ dir: String, _ body: () throws -> Void) throws {
    let path = dir + "/acked.mark"
    let before = try Data(contentsOf: URL(fileURLWithPath: path))
    try body()
    try before.write(to: URL(fileURLWithPath: path))
}

/// Runs `body(i)` on `count` threads at once and waits for all.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        Thread.detachNewThread { body(i); group.leave() }
    }
    group.wait()
}

final class SeqCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var seqs: [UInt64] = []
    func add(_ s: UInt64) { lock.lock(); seqs.append(s); lock.unlock() }
    var values: [UInt64] { lock.lock(); defer { lock.unlock() }; return seqs }
}

/// Runs `body` with the path of a 256 KiB tmpfs mounted for it, unmounted afterwards (mounting needs root: tests
/// using it are enabled only then; a failed mount is recorded as an issue, not skipped).
func withSmallTmpfs(_ body: (String) throws -> Void) throws {
    let dir = TempDir("tmpfs")
    guard Glibc.mount("tmpfs", dir.path, "tmpfs", 0, "size=256k") == 0 else {
        Issue.record("mounting a tmpfs needs root: errno \(errno)")
        return
    }
    defer { umount(dir.path) }
    try body(dir.path)
}

final class SyncCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return n }
}

@Suite struct ChainHashTests {
    @Test func chainHashIsStandardSHA256() {
        // The FIPS 180-2 vectors for "abc" and the empty message.
        #expect(Array("abc".utf8).withUnsafeBytes { RecordHash(sha256: $0) }.hex
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect([UInt8]().withUnsafeBytes { RecordHash(sha256: $0) }.hex
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
