import CTickwireSys
import Foundation
import Synchronization
import Testing
@testable import TickwireJournal

/// The journal as the index sees it: sequence → the key of the record journaled there.
private struct ModelJournal {
    var keys: [[UInt8]] = []
    var last: UInt64 { UInt64(keys.count) }
    mutating func append(_ key: [UInt8]) -> UInt64 { keys.append(key); return last }
    /// The trade service's check: the record at `seq` exists and is this key's.
    func holds(_ key: [UInt8], at seq: UInt64) -> Bool { seq >= 1 && seq <= last && keys[Int(seq) - 1] == key }
    /// Journals the keys of `range` (`retryKey(i)`), inserting each into `index` at its sequence.
    mutating func append(_ range: Range<Int>, into index: RetryIndex) throws {
        for i in range { let key = retryKey(i); try index.insert(key, seq: append(key)) }
    }
    /// Every key of `range` found in `index` at its sequence (key i journaled i + 1st).
    func expectFound(_ range: some Sequence<Int>, in index: RetryIndex, sourceLocation: SourceLocation = #_sourceLocation) {
        for i in range {
            let key = retryKey(i)
            #expect(index.lookup(key, verify: { holds(key, at: $0) }) == UInt64(i + 1), sourceLocation: sourceLocation)
        }
    }
}

private func retryKey(_ i: Int) -> [UInt8] { RetryIndex.key(trader: "trader\(i % 7)", clientOrderID: "ord-\(i)") }

private func indexPath(_ dir: TempDir) -> String { dir.path + "/journal/retry.idx" }

@Suite(.timeLimit(.minutes(5))) struct RetryIndexTests {
    @Test func headerLayoutIsDerivedAndFitsOneSector() {
        #expect(IndexFile.Header.crc == 64 && IndexFile.Header.end == 72)
        #expect(IndexFile.Header.end <= JournalFormat.sectorSize)   // written atomically by the disk
        #expect(IndexFile.headerBytes % 4096 == 0 && IndexFile.slotBytes == 16)
    }

    @Test func insertAndLookupRoundTripAMillionKeys() throws {
        let dir = TempDir("retryidx")
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == "no index file" && index.coveredThrough == 0 && index.count == 0)
        var journal = ModelJournal()
        let n = 1_000_000
        for i in 0..<n {
            let key = retryKey(i)
            let seq = journal.append(key)
            #expect(try index.insert(key, seq: seq))
        }
        #expect(index.count == n && index.capacity >= 2 * n && index.growths > 0)
        var misses = 0
        for i in 0..<n {
            let key = retryKey(i)
            if index.lookup(key, verify: { journal.holds(key, at: $0) }) != UInt64(i + 1) { misses += 1 }
        }
        #expect(misses == 0)
        var falseHits = 0
        for i in n..<(n + 100_000) {
            let key = retryKey(i)
            if index.lookup(key, verify: { journal.holds(key, at: $0) }) != nil { falseHits += 1 }
        }
        #expect(falseHits == 0)
        // Inserting a pair that is there changes nothing (the replay after a checkpoint relies on it).
        #expect(try index.insert(retryKey(12345), seq: 12346) == false)
        #expect(index.count == n)
    }

    @Test func aRejectedCandidateContinuesTheProbe() throws {
        let dir = TempDir("retryidx")
        let index = try RetryIndex(path: indexPath(dir), initialCapacity: 64)
        // Three different keys with one hash (a forced collision), then an unrelated entry on the same run.
        let h: UInt64 = 0x1234_5678_9abc_def0
        #expect(try index.insert(hash: h, seq: 7))
        #expect(try index.insert(hash: h &+ 64, seq: 8))   // same home slot, other hash: never offered to verify
        #expect(try index.insert(hash: h, seq: 9))
        #expect(try index.insert(hash: h, seq: 11))
        var offered: [UInt64] = []
        let found = index.lookup(hash: h) { seq in offered.append(seq); return seq == 11 }
        #expect(found == 11 && offered == [7, 9, 11])
        offered = []
        #expect(index.lookup(hash: h) { offered.append($0); return false } == nil)
        #expect(offered == [7, 9, 11])
        // A throwing verify (a journal read that failed) propagates its error.
        struct ReadFailed: Error {}
        #expect(throws: ReadFailed.self) { _ = try index.lookup(hash: h) { (_: UInt64) throws(ReadFailed) -> Bool in throw ReadFailed() } }
        // The same key under a stale sequence and a real one: the stale one is rejected, the real one found.
        var journal = ModelJournal()
        let key = retryKey(1)
        try index.insert(key, seq: 500)   // stale: the journal never got that far
        let seq = journal.append(key)
        try index.insert(key, seq: seq)
        #expect(index.lookup(key, verify: { journal.holds(key, at: $0) }) == seq)
    }

    /// Ten doublings from 64 slots, made in place (on the inserting thread) or in the background (from 64 slots:
    /// the inserts go on into the old table while the new one is built from its file, and are placed into it at
    /// the take-over): every entry is found, whether it went in before a doubling or while one was built, and the
    /// file matches the final table.
    @Test(arguments: [Int.max, 64])
    func growthKeepsEveryEntryAndTheFileMatchesTheCapacity(backgroundGrowthFrom: Int) throws {
        let dir = TempDir("retryidx")
        var journal = ModelJournal()
        let background = backgroundGrowthFrom != Int.max
        var sawGrowing = 0
        do {
            let index = try RetryIndex(path: indexPath(dir), initialCapacity: 64, backgroundGrowthFrom: backgroundGrowthFrom)
            #expect(index.capacity == 64)
            for i in 0..<20_000 {
                let key = retryKey(i)
                try index.insert(key, seq: journal.append(key))
                // In place the table never passes half; while a doubling is built it may, up to the hard limit.
                #expect(background ? index.count * 8 <= index.capacity * 7 : index.count * 2 <= index.capacity)
                if index.growing { sawGrowing += 1 }
                if i % 97 == 0 {
                    for j in [0, i / 3, i / 2, i] {
                        let k = retryKey(j)
                        #expect(index.lookup(k, verify: { journal.holds(k, at: $0) }) == UInt64(j + 1))
                    }
                }
            }
            index.finishGrowth()
            #expect((sawGrowing > 0) == background)
            #expect(index.growths == 10 && index.capacity == 64 << 10 && index.count == 20_000)
            #expect(index.lastGrowthPauseNanos <= index.lastGrowthNanos)
            journal.expectFound(0..<20_000, in: index)
            let size = try FileManager.default.attributesOfItem(atPath: indexPath(dir))[.size] as! Int
            #expect(size == IndexFile.headerBytes + index.capacity * IndexFile.slotBytes)
            #expect(!FileManager.default.fileExists(atPath: indexPath(dir) + ".grow"))
            try index.checkpoint(coveredThrough: journal.last)
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.capacity == 64 << 10 && index.count == 20_000)
        #expect(index.coveredThrough == 20_000)
        journal.expectFound(stride(from: 0, to: 20_000, by: 7), in: index)
    }

    @Test func checkpointThenReopenGivesCoveredThroughAndEveryEntry() throws {
        let dir = TempDir("retryidx")
        var journal = ModelJournal()
        do {
            let index = try RetryIndex(path: indexPath(dir), initialCapacity: 1 << 12)
            try journal.append(0..<50_000, into: index)
            try index.checkpoint(coveredThrough: journal.last)
            #expect(index.coveredThrough == 50_000)
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 50_000 && index.count == 50_000)
        journal.expectFound(0..<50_000, in: index)
        #expect(index.lookup(retryKey(50_000), verify: { _ in true }) == nil)
    }

    /// A checkpoint whose syncs run on another thread while inserts go on (the trade service's way): reopened
    /// after it, as after a crash before any later checkpoint, the file holds every entry up to its cut under a
    /// header that claims exactly the cut.
    @Test func aCheckpointSyncedOnAnotherThreadWhileInsertsGoOnCoversItsCut() throws {
        let dir = TempDir("retryidx-background")
        var journal = ModelJournal()
        do {
            let index = try RetryIndex(path: indexPath(dir), initialCapacity: 1 << 16)
            try journal.append(0..<20_000, into: index)
            let pending = try index.beginCheckpoint(coveredThrough: journal.last)
            let failure = Mutex<String?>(nil)
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                do { try pending.syncPages(); try pending.writeHeader() } catch { failure.withLock { $0 = "\(error)" } }
                done.signal()
            }
            try journal.append(20_000..<30_000, into: index)
            done.wait()
            #expect(failure.withLock { $0 } == nil)
            index.checkpointCommitted(pending)
            #expect(index.coveredThrough == 20_000)
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 20_000)
        journal.expectFound(0..<20_000, in: index)
    }

    /// The table doubles while a checkpoint is in flight: the checkpoint's header goes to the file it began on,
    /// which the doubling replaced, so the coverage stays where the new file's header has it (never more than a
    /// file holds); the journal's replay from there brings back what the file lacks.
    @Test func aTableThatDoublesUnderACheckpointKeepsItsCoverage() throws {
        let dir = TempDir("retryidx-doubling")
        var journal = ModelJournal()
        do {
            let index = try RetryIndex(path: indexPath(dir), initialCapacity: 64)
            try journal.append(0..<20, into: index)
            try index.checkpoint(coveredThrough: journal.last)
            try journal.append(20..<30, into: index)
            let pending = try index.beginCheckpoint(coveredThrough: journal.last)
            try journal.append(30..<500, into: index)
            #expect(index.growths > 0)
            try pending.syncPages()
            try pending.writeHeader()
            index.checkpointCommitted(pending)
            #expect(index.coveredThrough == 20)
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 20)
        journal.expectFound(0..<20, in: index)
    }

    /// A crash during a checkpoint: the file holds every entry of the one before and some of the later ones
    /// (whichever of the pages being written reached the disk), under the earlier header. Replaying the journal
    /// after it brings everything back, and the later entries already there are harmless.
    @Test func aCrashDuringACheckpointLosesNothingTheReplayDoesNotRestore() throws {
        let dir = TempDir("retryidx")
        let path = indexPath(dir)
        var journal = ModelJournal()
        let checkpointed = 30_000, total = 40_000
        var atCheckpoint: [UInt8] = []
        do {
            let index = try RetryIndex(path: path, initialCapacity: 1 << 17)   // no growth: one file throughout
            try journal.append(0..<checkpointed, into: index)
            try index.checkpoint(coveredThrough: journal.last)
            atCheckpoint = try FileIO.readFile(path)
            try journal.append(checkpointed..<total, into: index)
            // Nothing placed since the checkpoint is in the file before the next one.
            #expect(try FileIO.readFile(path) == atCheckpoint)
            try index.checkpoint(coveredThrough: journal.last)
        }
        // The process died during that checkpoint: its header never reached the disk, nor every other page.
        var onDisk = try FileIO.readFile(path)
        #expect(onDisk.count == atCheckpoint.count)
        onDisk.replaceSubrange(0..<IndexFile.headerBytes, with: atCheckpoint[0..<IndexFile.headerBytes])
        var lostPages = 0
        for page in stride(from: IndexFile.headerBytes, to: onDisk.count, by: 4096) where (page / 4096) % 2 == 0 {
            if onDisk[page..<page + 4096] != atCheckpoint[page..<page + 4096] {
                onDisk.replaceSubrange(page..<page + 4096, with: atCheckpoint[page..<page + 4096])
                lostPages += 1
            }
        }
        #expect(lostPages > 100)
        try Data(onDisk).write(to: URL(fileURLWithPath: path))

        let index = try RetryIndex(path: path)
        #expect(index.rebuiltReason == nil && index.coveredThrough == UInt64(checkpointed) && index.count == checkpointed)
        journal.expectFound(0..<checkpointed, in: index)
        // The replay from coveredThrough + 1: some pairs are there already, the rest go in.
        var added = 0
        for seq in (index.coveredThrough + 1)...journal.last {
            if try index.insert(journal.keys[Int(seq) - 1], seq: seq) { added += 1 }
        }
        #expect(added > 0 && added < total - checkpointed)
        journal.expectFound(0..<total, in: index)
    }

    /// Recovery cut the journal's tail: entries after its end are stale, `coveredThrough` comes down to the end
    /// durably, and new records under the same sequences are found, not the stale ones.
    @Test func aJournalCutBackClampsCoveredThroughAndStaleEntriesFailVerify() throws {
        let dir = TempDir("retryidx")
        var journal = ModelJournal()
        do {
            let index = try RetryIndex(path: indexPath(dir))
            try journal.append(0..<1_000, into: index)
            try index.checkpoint(coveredThrough: 1_000)
        }
        journal.keys.removeLast(200)   // the journal now ends at 800
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.coveredThrough == 1_000)
        try index.journalEnds(at: journal.last)
        #expect(index.coveredThrough == 800)
        try index.journalEnds(at: 900)   // never raises it
        #expect(index.coveredThrough == 800)
        for i in 800..<1_000 {
            let key = retryKey(i)
            #expect(index.lookup(key, verify: { journal.holds(key, at: $0) }) == nil)
        }
        // New records take sequences 801…: another key at 801, then a retry of key 900 lands at 802.
        let other = retryKey(5_000), retried = retryKey(900)
        try index.insert(other, seq: journal.append(other))
        try index.insert(retried, seq: journal.append(retried))
        #expect(index.lookup(retried, verify: { journal.holds(retried, at: $0) }) == 802)
        #expect(index.lookup(retryKey(800), verify: { journal.holds(retryKey(800), at: $0) }) == nil)
        // The clamp is in the file's header: a crash now replays from 801.
        let header = try FileIO.readFile(indexPath(dir)).prefix(64)
        #expect(header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: IndexFile.Header.coveredThrough, as: UInt64.self) } == 800)
    }

    @Test(arguments: [
        (IndexFile.Header.coveredThrough, "header CRC32C mismatch"),
        (IndexFile.Header.magic + 2, "bad magic"),
        (IndexFile.Header.capacity, "header CRC32C mismatch"),
    ])
    func aDamagedHeaderIsRebuiltFromScratch(offset: Int, reason: String) throws {
        let dir = TempDir("retryidx")
        try fillAndCheckpoint(dir, entries: 5_000)
        var bytes = try FileIO.readFile(indexPath(dir))
        bytes[offset] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: indexPath(dir)))
        try expectRebuilt(dir, reason: reason)
    }

    /// A replay that says how far it has come keeps the digest's noted parts few, and its checkpoint's digest is
    /// right; a note ahead of the inserts (entries up to it going in after) is still counted right.
    @Test func aReplayNotingItsProgressKeepsTheDigestsPartsFew() throws {
        let dir = TempDir("retryidx")
        var journal = ModelJournal()
        do {
            let index = try RetryIndex(path: indexPath(dir), initialCapacity: 1 << 20)
            for chunk in 0..<20 {
                try journal.append(chunk * 10_000..<(chunk + 1) * 10_000, into: index)
                index.noteInserted(through: journal.last)
                #expect(index.notedParts == 0)
            }
            index.noteInserted(through: 250_000)   // ahead of the inserts
            try journal.append(200_000..<250_000, into: index)
            try index.checkpoint(coveredThrough: 250_000)
            index.close()
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 250_000, "\(index.rebuiltReason ?? "")")
        journal.expectFound(0..<250_000, in: index)
    }

    /// A sector of the table read back as zeros loses entries a retry would need: found at the open (fewer entries
    /// than the header counted) and rebuilt from the journal, never taken as it is.
    @Test func aZeroedSectorOfTheTableIsFoundAndTheIndexRebuilt() throws {
        try expectDamageFound(entries: 5_000, reason: "fewer than the 5000 its header counted") { table in
            let slot = try #require((0..<table.capacity).first { table.seq($0) != 0 })
            let sector = table.offset(slot) / 512 * 512
            table.bytes.replaceSubrange(sector..<sector + 512, with: repeatElement(0, count: 512))
        }
    }

    /// An entry cut out of the middle of a probe run and the same count elsewhere (here: the entry moved to an empty
    /// slot far off): lookups past the hole would end there. Found by the entries that lie beyond it.
    @Test func aHoleInAProbeRunIsFoundAndTheIndexRebuilt() throws {
        try expectDamageFound(entries: 20_000, reason: "past an empty slot from its home") { table in
            // A displaced entry (not in its home slot), and the slot just before it in its run.
            let displaced = try #require((0..<table.capacity).first { i in
                table.seq(i) != 0 && table.home(i) != i && table.seq(i - 1) != 0
            })
            let hole = table.offset(displaced - 1)
            let moved = Array(table.bytes[hole..<hole + 16])
            let empty = try #require((0..<table.capacity).map { displaced + table.capacity / 2 + $0 }.first { table.seq($0) == 0 })
            table.bytes.replaceSubrange(table.offset(empty)..<table.offset(empty) + 16, with: moved)
            table.bytes.replaceSubrange(hole..<hole + 16, with: repeatElement(0, count: 16))
        }
    }

    /// Garbage over a filled slot the last checkpoint covered: the entry it held is lost (a retry of that trade
    /// would be journaled again) and the garbage reads as another entry, so neither the count nor the probe runs
    /// show it; the digest of the covered entries, in the header, does.
    @Test func garbageOverACoveredEntryIsFoundByTheDigestAndTheIndexRebuilt() throws {
        try expectDamageFound(entries: 5_000, reason: "do not add up to the header's digest") { table in
            // An entry in its home slot, its hash's top byte changed: its home stays, so no probe run moves.
            let slot = try #require((0..<table.capacity).first { table.seq($0) != 0 && table.home($0) == $0 })
            table.bytes[table.offset(slot) + 7] ^= 0x5A
        }
    }

    /// The digest follows every way the coverage moves: checkpoints, a doubling in place, a `journalEnds` that
    /// lowers it, entries after it; each reopen finds the file sound.
    @Test func theDigestFollowsCheckpointsDoublingsAndALoweredCoverage() throws {
        let dir = TempDir("retryidx")
        var journal = ModelJournal()
        do {
            let index = try RetryIndex(path: indexPath(dir), initialCapacity: 64, backgroundGrowthFrom: Int.max)
            try journal.append(0..<100, into: index)          // doubles in place on the way
            try index.checkpoint(coveredThrough: 80)           // 81...100 after the cut
            try journal.append(100..<150, into: index)
            try index.checkpoint(coveredThrough: 150)
            try index.journalEnds(at: 120)                     // 121...150 stay, stale
            index.close()
        }
        do {
            let index = try RetryIndex(path: indexPath(dir))
            #expect(index.rebuiltReason == nil && index.coveredThrough == 120, "\(index.rebuiltReason ?? "")")
            for i in 120..<130 { _ = try index.insert(RetryIndex.key(trader: "again", clientOrderID: "\(i)"), seq: UInt64(i + 1)) }
            try index.checkpoint(coveredThrough: 130)
            index.close()
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 130, "\(index.rebuiltReason ?? "")")
    }

    @Test func anotherVersionIsRebuiltFromScratch() throws {
        let dir = TempDir("retryidx")
        try fillAndCheckpoint(dir, entries: 5_000)
        var bytes = try FileIO.readFile(indexPath(dir))
        bytes.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(3).littleEndian, toByteOffset: IndexFile.Header.version, as: UInt32.self)
            let crc = crc32c(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[0..<IndexFile.Header.crc]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: IndexFile.Header.crc, as: UInt32.self)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: indexPath(dir)))
        try expectRebuilt(dir, reason: "version 3, expected 2")
    }

    @Test(arguments: [0, 100, 4096, 4096 + 16 * 1000])
    func aTruncatedFileIsRebuiltFromScratch(keep: Int) throws {
        let dir = TempDir("retryidx")
        try fillAndCheckpoint(dir, entries: 5_000)
        #expect(truncate(indexPath(dir), off_t(keep)) == 0)
        try expectRebuilt(dir, reason: nil)
    }

    /// A doubling that fails (here: its file's name is taken by a directory, EISDIR; a full disk is the real
    /// case) leaves the entries in the old table, which keeps taking them up to 7/8 full, then refuses with the error.
    @Test(arguments: [Int.max, 64])
    func aFailedGrowthKeepsInsertingUpToTheHardLimitThenThrows(backgroundGrowthFrom: Int) throws {
        let dir = TempDir("retryidx")
        let path = indexPath(dir)
        let index = try RetryIndex(path: path, initialCapacity: 64, backgroundGrowthFrom: backgroundGrowthFrom)
        #expect(mkdir(path + ".grow", 0o755) == 0)
        for i in 0..<56 { try index.insert(retryKey(i), seq: UInt64(i + 1)) }
        index.finishGrowth()   // one in the background: its failure is known once it is taken over
        #expect(index.capacity == 64 && index.count == 56 && index.growths == 0)
        #expect(index.growthFailure == .io(operation: "open", path: path + ".grow", errno: EISDIR))
        #expect(throws: JournalError.io(operation: "open", path: path + ".grow", errno: EISDIR)) {
            try index.insert(retryKey(56), seq: 57)
        }
        #expect(index.count == 56)
        for i in 0..<56 { #expect(index.lookup(retryKey(i), verify: { $0 == UInt64(i + 1) }) == UInt64(i + 1)) }
        // Once the name is free the next insert doubles the table.
        #expect(rmdir(path + ".grow") == 0)
        try index.insert(retryKey(56), seq: 57)
        #expect(index.capacity == 128 && index.count == 57 && index.growths == 1 && index.growthFailure == nil)
        for i in 0..<57 { #expect(index.lookup(retryKey(i), verify: { $0 == UInt64(i + 1) }) == UInt64(i + 1)) }
    }

    /// A 64-slot index that doubles in the background, keys 1…`through` inserted and checkpointed, then more
    /// until a doubling starts (the 33rd insert); returns it and the last key inserted.
    private func growingIndex(_ dir: TempDir, checkpointedThrough through: Int) throws -> (RetryIndex, Int) {
        let index = try RetryIndex(path: indexPath(dir), initialCapacity: 64, backgroundGrowthFrom: 64)
        var n = 0
        while n < through { n += 1; try index.insert(retryKey(n), seq: UInt64(n)) }
        if through > 0 { try index.checkpoint(coveredThrough: UInt64(through)) }
        while !index.growing { n += 1; try index.insert(retryKey(n), seq: UInt64(n)) }
        return (index, n)
    }

    /// A checkpoint while a doubling is built (on the old file, whose pages the building thread reads; or, when the
    /// doubling is done by then, on the new one after taking it over), then the take-over: the coverage is at
    /// most the checkpoint's (the doubling's start's when the checkpoint went to the old file), the next
    /// checkpoint raises it, and a reopen finds every entry. Under the thread sanitizer in CI.
    @Test func aCheckpointDuringABackgroundDoublingAndAReopen() throws {
        let dir = TempDir("retryidx")
        do {
            let (index, started) = try growingIndex(dir, checkpointedThrough: 0)
            var n = started
            let startedAt = index.coveredThrough
            for _ in 0..<10 { n += 1; try index.insert(retryKey(n), seq: UInt64(n)) }
            try index.checkpoint(coveredThrough: UInt64(n))   // the old file, beside the building thread
            #expect(index.coveredThrough == UInt64(n))
            index.finishGrowth()
            #expect(index.capacity == 128 && index.count == n)
            #expect(index.coveredThrough == startedAt || index.coveredThrough == UInt64(n))
            try index.checkpoint(coveredThrough: UInt64(n))
            index.close()
        }
        // 33 inserts pass half of 64 slots and start the doubling; 10 more go in while it is built.
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.capacity == 128 && index.coveredThrough == 43 && index.count == 43)
        for i in 1...43 { #expect(index.lookup(retryKey(i), verify: { $0 == UInt64(i) }) == UInt64(i)) }
    }

    /// `journalEnds` lowering the coverage while a doubling is built: the doubling is taken over first, so the
    /// lowered coverage is what lasts (the new file's header would otherwise claim the coverage of its start).
    @Test func journalEndsDuringABackgroundDoublingLowersTheCoverageForGood() throws {
        let dir = TempDir("retryidx")
        do {
            let (index, _) = try growingIndex(dir, checkpointedThrough: 30)
            try index.journalEnds(at: 20)
            index.finishGrowth()
            #expect(index.capacity == 128 && index.coveredThrough == 20)
            index.close()
        }
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 20)
    }

    /// A doubling still being built when the index is closed is waited for: the doubled table is in place, its
    /// header claiming the coverage of the doubling's start (a later checkpoint of the old table does not reach
    /// it; one that came after the doubling was done took it over and wrote to it), so the next start replays
    /// from there; no leftover file.
    @Test func aDoublingInFlightAtCloseLeavesAWholeTable() throws {
        let dir = TempDir("retryidx")
        do {
            let (index, n) = try growingIndex(dir, checkpointedThrough: 20)
            try index.checkpoint(coveredThrough: UInt64(n))
            index.close()
        }
        #expect(!FileManager.default.fileExists(atPath: indexPath(dir) + ".grow"))
        let index = try RetryIndex(path: indexPath(dir))
        // The 33rd insert started the doubling: the new table holds the 32 before it (and the 33rd when the
        // checkpoint wrote its page before the building thread read it, or took the doubling over); the replay
        // from past the coverage restores the rest.
        #expect(index.rebuiltReason == nil && index.capacity == 128)
        #expect(index.coveredThrough == 20 || (index.coveredThrough == 33 && index.count == 33))
        #expect(index.count == 32 || index.count == 33)
        for i in 1...32 { #expect(index.lookup(retryKey(i), verify: { $0 == UInt64(i) }) == UInt64(i)) }
    }

    @Test func leftoversOfAnInterruptedGrowthAreRemoved() throws {
        let dir = TempDir("retryidx")
        try fillAndCheckpoint(dir, entries: 100)
        #expect(FileManager.default.createFile(atPath: indexPath(dir) + ".grow", contents: Data([1, 2, 3])))
        let index = try RetryIndex(path: indexPath(dir))
        #expect(index.rebuiltReason == nil && index.coveredThrough == 100)
        #expect(!FileManager.default.fileExists(atPath: indexPath(dir) + ".grow"))
    }

    private func fillAndCheckpoint(_ dir: TempDir, entries: Int) throws {
        let index = try RetryIndex(path: indexPath(dir))
        for i in 0..<entries { try index.insert(retryKey(i), seq: UInt64(i + 1)) }
        try index.checkpoint(coveredThrough: UInt64(entries))
    }

    /// An index file's bytes, read by slot (little-endian, as written).
    private struct TableImage {
        var bytes: [UInt8]
        var capacity: Int { (bytes.count - IndexFile.headerBytes) / IndexFile.slotBytes }
        func offset(_ i: Int) -> Int { IndexFile.headerBytes + IndexFile.slotBytes * (i & (capacity - 1)) }
        func word(_ o: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) } }
        func seq(_ i: Int) -> UInt64 { word(offset(i) + 8) }
        func home(_ i: Int) -> Int { Int(truncatingIfNeeded: word(offset(i))) & (capacity - 1) }
    }

    /// `entries` inserted and checkpointed, the file's table changed by `damage`, then the open must rebuild it,
    /// saying `reason`.
    private func expectDamageFound(entries: Int, reason: String, _ damage: (inout TableImage) throws -> Void) throws {
        let dir = TempDir("retryidx")
        try fillAndCheckpoint(dir, entries: entries)
        var table = TableImage(bytes: try FileIO.readFile(indexPath(dir)))
        try damage(&table)
        try Data(table.bytes).write(to: URL(fileURLWithPath: indexPath(dir)))
        try expectRebuilt(dir, reason: nil, containing: reason)
    }

    private func expectRebuilt(_ dir: TempDir, reason: String?, containing part: String? = nil) throws {
        let index = try RetryIndex(path: indexPath(dir), initialCapacity: 256)
        #expect(index.rebuiltReason != nil)
        if let reason { #expect(index.rebuiltReason == reason) }
        if let part { #expect(index.rebuiltReason?.contains(part) == true, "\(index.rebuiltReason ?? "not rebuilt")") }
        #expect(index.coveredThrough == 0 && index.count == 0 && index.capacity == 256)
        #expect(index.lookup(retryKey(1), verify: { _ in true }) == nil)
        // The rebuilt file is whole: the caller's full replay goes in and survives a reopen.
        for i in 0..<1_000 { try index.insert(retryKey(i), seq: UInt64(i + 1)) }
        try index.checkpoint(coveredThrough: 1_000)
        index.close()
        let again = try RetryIndex(path: indexPath(dir))
        #expect(again.rebuiltReason == nil && again.coveredThrough == 1_000 && again.count == 1_000)
        #expect(again.lookup(retryKey(999), verify: { $0 == 1_000 }) == 1_000)
    }

    /// Figures for docs and reviews, not a pass/fail test: `TICKWIRE_RETRYINDEX_BENCH=10000000 swift test
    /// --filter RetryIndexTests/figures` (build in release for rates: `-c release -Xswiftc -enable-testing`).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TICKWIRE_RETRYINDEX_BENCH"] != nil))
    func figures() throws {
        let n = Int(ProcessInfo.processInfo.environment["TICKWIRE_RETRYINDEX_BENCH"]!) ?? 10_000_000
        let dir = TempDir("retryidx-bench")
        let report = RetryIndexBench.run(directory: dir.path, entries: n)
        print(try report.get())
    }
}

/// Inserts and looks up `entries` keys built in one reused buffer (no allocation per key), timing each phase and
/// reading RssAnon/RssFile from /proc/self/status.
enum RetryIndexBench {
    static func rss() -> (anonKiB: Int, fileKiB: Int) {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return -1 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return (field("RssAnon"), field("RssFile"))
    }

    /// The map it replaces, as TradeService holds it: `[RetryKey: UInt64]`, the key two Strings (short ones, stored
    /// inline: no allocation per key).
    static func baseline(entries n: Int) -> String {
        struct RetryKey: Hashable { let trader: String, clientOrderID: String }
        let traders = (0..<7).map { "trader\($0)" }
        let before = rss()
        var t0 = tw_monotonic_ns()
        var map: [RetryKey: UInt64] = [:]
        for i in 0..<n { map[RetryKey(trader: traders[i % 7], clientOrderID: String(i))] = UInt64(i + 1) }
        let insertNs = tw_monotonic_ns() - t0
        let after = rss()
        t0 = tw_monotonic_ns()
        var found = 0
        for i in 0..<n where map[RetryKey(trader: traders[i % 7], clientOrderID: String(i))] == UInt64(i + 1) { found += 1 }
        let lookupNs = tw_monotonic_ns() - t0
        return "baseline [RetryKey: UInt64]: insert \(Double(n) / (Double(insertNs) / 1e9)) /s, lookup hit \(Double(n) / (Double(lookupNs) / 1e9)) /s (\(found) found); RSS anon +\(after.anonKiB - before.anonKiB) KiB (\(Double((after.anonKiB - before.anonKiB) * 1024) / Double(n)) bytes an entry)\n"
    }

    static func run(directory: String, entries n: Int) -> Result<String, JournalError> {
        do throws(JournalError) {
            var out = "retry index, \(n) entries\n"
            var buffer = [UInt8](repeating: 0, count: 32)
            // "traderT\0" then the decimal order id: 20-30 bytes like a real key.
            func withKey<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws(JournalError) -> R) throws(JournalError) -> R {
                try buffer.withUnsafeMutableBytes { b -> Result<R, JournalError> in
                    let prefix: [UInt8] = Array("trader".utf8)
                    for (j, c) in prefix.enumerated() { b[j] = c }
                    b[6] = UInt8(0x30 + i % 7); b[7] = 0
                    var v = i, len = 8, digits = 0
                    repeat { digits += 1; v /= 10 } while v > 0
                    v = i
                    for d in stride(from: digits - 1, through: 0, by: -1) { b[len + d] = UInt8(0x30 + v % 10); v /= 10 }
                    len += digits
                    do { return .success(try body(UnsafeRawBufferPointer(rebasing: b[0..<len]))) } catch { return .failure(error as! JournalError) }
                }.get()
            }
            let before = rss()
            let start = tw_monotonic_ns()
            let index = try RetryIndex(path: directory + "/retry.idx")
            var growthsSeen = 0
            var pauses: [(capacity: Int, ms: Double, builtMs: Double)] = []
            var t0 = tw_monotonic_ns()
            for i in 0..<n {
                _ = try withKey(i) { (k) throws(JournalError) in try index.insert(k, seq: UInt64(i + 1)) }
                if index.growths != growthsSeen {
                    growthsSeen = index.growths
                    pauses.append((index.capacity, Double(index.lastGrowthPauseNanos) / 1e6, Double(index.lastGrowthNanos) / 1e6))
                }
            }
            let insertNs = tw_monotonic_ns() - t0
            let growthNs = pauses.reduce(0.0) { $0 + $1.ms } * 1e6
            out += "open: \(Double(t0 - start) / 1e6) ms\n"
            out += "insert: \(Double(n) / (Double(insertNs) / 1e9)) /s overall; \(Double(n) / ((Double(insertNs) - growthNs) / 1e9)) /s without growth pauses\n"
            out += "growth pauses (capacity after: ms the inserts were held / ms from start to take-over): "
                + pauses.map { "\($0.capacity): \(String(format: "%.1f / %.1f", $0.ms, $0.builtMs))" }.joined(separator: ", ") + "\n"
            let afterInsert = rss()
            t0 = tw_monotonic_ns()
            var found = 0
            for i in 0..<n {
                let seq = UInt64(i + 1)
                if try withKey(i, { k in index.lookup(k, verify: { $0 == seq }) }) != nil { found += 1 }
            }
            let hitNs = tw_monotonic_ns() - t0
            t0 = tw_monotonic_ns()
            var falseFound = 0
            for i in n..<(n + n / 10) {
                if try withKey(i, { k in index.lookup(k, verify: { _ in false }) }) != nil { falseFound += 1 }
            }
            let missNs = tw_monotonic_ns() - t0
            out += "lookup hit: \(Double(n) / (Double(hitNs) / 1e9)) /s (\(found) found); miss: \(Double(n / 10) / (Double(missNs) / 1e9)) /s\n"
            t0 = tw_monotonic_ns()
            try index.checkpoint(coveredThrough: UInt64(n))
            out += "checkpoint after the load: \(Double(tw_monotonic_ns() - t0) / 1e6) ms\n"
            for i in n..<(n + 100_000) { _ = try withKey(i) { (k) throws(JournalError) in try index.insert(k, seq: UInt64(i + 1)) } }
            t0 = tw_monotonic_ns()
            try index.checkpoint(coveredThrough: UInt64(n + 100_000))
            out += "checkpoint after 100k more inserts: \(Double(tw_monotonic_ns() - t0) / 1e6) ms\n"
            let afterAll = rss()
            out += "RSS KiB before: anon \(before.anonKiB) file \(before.fileKiB); after inserts: anon \(afterInsert.anonKiB) file \(afterInsert.fileKiB); after lookups and checkpoints: anon \(afterAll.anonKiB) file \(afterAll.fileKiB)\n"
            out += "capacity \(index.capacity) slots, file \(IndexFile.headerBytes + index.capacity * IndexFile.slotBytes) bytes\n"
            t0 = tw_monotonic_ns()
            let reopened = try RetryIndex(path: directory + "/retry.idx")
            out += "reopen: \(Double(tw_monotonic_ns() - t0) / 1e6) ms, coveredThrough \(reopened.coveredThrough), rss anon \(rss().anonKiB) file \(rss().fileKiB)\n"
            out += baseline(entries: n)
            return .success(out)
        } catch {
            return .failure(error)
        }
    }
}
