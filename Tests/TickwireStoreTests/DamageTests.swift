import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// Damage inside an unsealed log: reported with its file and offset, read around, and never deleted.
@Suite(.timeLimit(.minutes(5))) struct DamageTests {
    let ev = Events()
    static let firstBlock = AppendLog.headerSize + 24 + 100 * 64    // the first block also defines the subject
    static let block = AppendLog.headerSize + 100 * 64

    func quotes(_ n: Int, from start: Int = 0) -> [Event] {
        (start..<start + n).map { ev.quote("MD.XNAS.AAPL.QUOTE", at: t(Double($0) * 0.001), known: t(Double($0) * 0.001), bid: Int64($0), ask: Int64($0) + 1) }
    }

    /// Ten blocks of 100 quotes (bids 0..<1000) in one unsealed log; returns the log's path and bytes.
    func tenBlocks(_ dir: String) throws -> (path: String, bytes: Data) {
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100)
        for e in quotes(1000) { try w.append(e) }
        try w.close()
        let path = dir + "/2026-01-05/MD.XNAS/" + Layout.logName(1)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.count == Self.firstBlock + 9 * Self.block)
        return (path, bytes)
    }

    /// Where block `i` (from 0) of `tenBlocks` starts.
    static func start(ofBlock i: Int) -> Int { i == 0 ? 0 : firstBlock + (i - 1) * block }

    func bids(_ events: [StoredEvent]) -> [Int] { events.map { Int($0.event.a / 1_000_000) } }

    func quarantined(_ dir: String) -> [String] { FS.list(dir + "/quarantine").map { dir + "/quarantine/" + $0 } }

    /// A block cut short by a failed write with later blocks after it (what the writer did before it cut failed
    /// writes back): the later blocks are read, and reopening keeps them.
    @Test func aPartialBlockFollowedByLaterBlocksHidesNothing() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let (path, whole) = try tenBlocks(dir)
        let partialAt = Self.start(ofBlock: 5)
        var bytes = whole.prefix(Self.start(ofBlock: 6))
        bytes.removeLast(Self.block / 2)                        // block 5 half written
        bytes += whole.suffix(from: Self.start(ofBlock: 6))     // blocks 6…9 after it
        try bytes.write(to: URL(fileURLWithPath: path))
        let expected = Array(0..<500) + Array(600..<1000)

        let reader = try StoreReader(directory: dir)
        #expect(bids(try reader.events(StoreQuery(subjects: SubjectPattern(">"), from: t(-3600), to: t(36000)))) == expected)
        #expect(reader.damage == [StoreDamage(path: path, offset: partialAt, bytes: Self.block - Self.block / 2,
                                              reason: "a block checksum mismatch", unattributedEvents: 0)])

        let incidents = IncidentLog()
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100, report: incidents.add)
        for e in quotes(10, from: 2000) { try w.append(e) }
        try w.close()
        #expect(w.tornBytesCut == 0)
        #expect(bids(try read(dir)) == expected + Array(2000..<2010))
        // The damaged log is kept byte for byte.
        let copies = quarantined(dir)
        #expect(copies.count == 1)
        #expect(try copies.map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == [bytes])
        guard case .quarantined(path, let damage, copies.first) = incidents.all.first else {
            Issue.record("expected a quarantine report, got \(incidents.all)"); return
        }
        #expect(damage.map(\.offset) == [partialAt])
    }

    /// One flipped byte in the middle of an unsealed log — in an event, or in a block header's length — loses
    /// that block only: a read returns the intact events before and after it and names the file and offset, and
    /// `checkIntact` turns that into an error.
    @Test(arguments: [(6, 1000, "a block checksum mismatch"), (6, 13, "a block longer than the file")])
    func aFlippedByteIsReportedAndTheBlocksAfterItAreRead(block: Int, byteInBlock: Int, reason: String) throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let (path, whole) = try tenBlocks(dir)
        var bytes = whole
        let damageAt = Self.start(ofBlock: block)
        bytes[damageAt + byteInBlock] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))

        let reader = try StoreReader(directory: dir)
        let events = try reader.events(StoreQuery(subjects: SubjectPattern(">"), from: t(-3600), to: t(36000)))
        #expect(bids(events) == Array(0..<block * 100) + Array((block + 1) * 100..<1000))
        #expect(reader.damage == [StoreDamage(path: path, offset: damageAt, bytes: Self.block, reason: reason, unattributedEvents: 0)])
        #expect(throws: StoreError.corrupt(path: path, offset: damageAt,
                                           reason: "\(reason): \(Self.block) bytes skipped, the intact blocks before and after them were read")) {
            try reader.checkIntact()
        }
    }

    /// Sealing a damaged log: the segment holds every intact event, and the log is kept whole in quarantine.
    @Test func sealingADamagedLogDeletesNothing() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let (path, whole) = try tenBlocks(dir)
        var bytes = whole
        bytes[Self.start(ofBlock: 3) + 500] ^= 1
        try bytes.write(to: URL(fileURLWithPath: path))

        // As if an earlier seal had set the log aside and then failed: it is not linked twice.
        let earlier = try Quarantine.keep(log: path, store: dir, key: PartitionKey(day: Layout.day(of: t(0).rawValue), root: "MD.XNAS"))
        let incidents = IncidentLog()
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100, report: incidents.add)
        try w.seal()
        try w.close()
        let expected = Array(0..<300) + Array(400..<1000)
        let partition = dir + "/2026-01-05/MD.XNAS"
        #expect(FS.list(partition) == [Layout.segmentName(1)])
        #expect(bids(try read(dir)) == expected)
        let copies = quarantined(dir)
        #expect(copies == [earlier])
        #expect(try copies.map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == [bytes])
        guard case .quarantined(path, let damage, copies.first) = incidents.all.first else {
            Issue.record("expected a quarantine report, got \(incidents.all)"); return
        }
        #expect(damage.map(\.offset) == [Self.start(ofBlock: 3)])
        #expect(incidents.all.count == 1)

        // Reopened, written, sealed again: the quarantined copy stays, nothing else is set aside.
        let w2 = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100, report: incidents.add)
        for e in quotes(10, from: 2000) { try w2.append(e) }
        try w2.seal()
        try w2.close()
        #expect(bids(try read(dir)) == expected + Array(2000..<2010))
        #expect(quarantined(dir) == copies && incidents.all.count == 1)
    }

    /// A writer reopening a damaged log keeps it whole in quarantine, goes on with its intact blocks, and a
    /// later open, read and seal find nothing wrong.
    @Test func reopeningADamagedLogKeepsEveryIntactBlock() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let (path, whole) = try tenBlocks(dir)
        var bytes = whole
        bytes[Self.start(ofBlock: 8) + 4000] ^= 0x80
        try bytes.write(to: URL(fileURLWithPath: path))

        let incidents = IncidentLog()
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100, report: incidents.add)
        for e in quotes(150, from: 2000) { try w.append(e) }
        try w.close()
        let expected = Array(0..<800) + Array(900..<1000) + Array(2000..<2150)
        let reader = try StoreReader(directory: dir)
        #expect(bids(try reader.events(StoreQuery(subjects: SubjectPattern(">"), from: t(-3600), to: t(36000)))) == expected)
        #expect(reader.damage.isEmpty)
        #expect(try quarantined(dir).map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == [bytes])
        guard case .quarantined(path, let damage, _) = incidents.all.first else {
            Issue.record("expected a quarantine report, got \(incidents.all)"); return
        }
        #expect(damage.map(\.offset) == [Self.start(ofBlock: 8)])

        let w2 = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100, report: incidents.add)
        try w2.seal()
        try w2.close()
        #expect(bids(try read(dir)) == expected)
        #expect(incidents.all.count == 1 && quarantined(dir).count == 1)
    }

    /// A torn tail — nothing valid after it — is still cut on reopen, and said so.
    @Test func aTornTailIsCutAndReported() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let (path, whole) = try tenBlocks(dir)
        try whole.prefix(whole.count - 100).write(to: URL(fileURLWithPath: path))
        let incidents = IncidentLog()
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100, report: incidents.add)
        try w.append(quotes(1, from: 2000)[0])
        try w.close()
        #expect(incidents.all == [.tornTailCut(path: path, offset: Self.start(ofBlock: 9), bytes: Self.block - 100,
                                                reason: "a block longer than the file")])
        #expect(quarantined(dir).isEmpty)
        #expect(bids(try read(dir)) == Array(0..<900) + [2000])
    }

    /// Events of a subject defined only in the damaged block cannot be attributed: they are counted with the
    /// damage (and kept in the quarantined copy), and every other event is read.
    @Test func eventsOfASubjectDefinedInTheDamagedBlockAreCounted() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        var events = quotes(300)
        for i in 100..<300 where i % 2 == 1 {
            events[i] = ev.quote("MD.XNAS.MSFT.QUOTE", at: events[i].eventTime, known: events[i].knownTime, bid: Int64(i), ask: Int64(i) + 1)
        }
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100)
        for e in events { try w.append(e) }
        try w.close()
        let path = dir + "/2026-01-05/MD.XNAS/" + Layout.logName(1)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[Self.firstBlock + 100] ^= 1                      // block 1, which defines MSFT
        let log = bytes.withUnsafeBytes { AppendLog.read($0) }
        #expect(log.damage.count == 1 && log.damage[0].offset == Self.firstBlock && log.damage[0].unattributedEvents == 50)
        #expect(log.events.map { Int($0.a / 1_000_000) } == Array(0..<100) + (200..<300).filter { $0 % 2 == 0 })
    }
}
