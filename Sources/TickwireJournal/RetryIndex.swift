import CTickwireSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A persistent hash index from a retry key (the trade service's trader + 0x00 + client order id) to the journal
/// sequence of the record that key was first journaled as: the trade service's dedupe map, a flat table in memory
/// kept in a file, so a start reads the table instead of the whole journal, and memory is 16 bytes a slot.
///
/// The journal is the source of truth; the index is a cache of it that may hold
/// - false candidates: two keys with the same 64-bit hash;
/// - stale entries: sequences cut off by recovery, or reused since by another record after a crash;
/// - duplicates: the same (key, sequence) twice after a crash mixed page versions of the table.
///
/// So `lookup` hands every candidate whose hash matches to the caller's `verify`, which reads the record (the
/// journal for durable sequences, the caller's in-flight list for ones not yet durable) and says whether it
/// really is that key's. Entries are never removed: a stale one fails `verify` forever.
///
/// Recovery rule (docs/STORAGE.md, "Retry index"): after opening, every record up to `coveredThrough` is in the
/// table. The caller calls `journalEnds(at:)` with the journal's last durable sequence, inserts the key of every
/// record after `coveredThrough` (inserting a pair that is already there changes nothing), and calls
/// `checkpoint(coveredThrough:)` now and then (every few seconds, or every so many records) to bound the replay of
/// the next start. A missing, damaged or wrong-version file is replaced by an empty one with `coveredThrough` 0.
///
/// Threads: not thread-safe and takes no locks. One thread (the trade service's) does every lookup, insert,
/// checkpoint and `journalEnds`. The one thing shared is a doubling of a large table, built on a thread of its
/// own from the old table's file (see `insert`). One process: the file must live beside a journal whose `LOCK`
/// the process holds (`DATA/journal/retry.idx`).
///
/// Memory: the table is anonymous memory (transparent huge pages where the kernel gives them), read from the file
/// at open and written back at checkpoints: only the 4 KiB pages dirtied since the last one, with `pwrite`. It
/// was a `MAP_SHARED` mapping of the file: each insert into a page that a checkpoint had cleaned took a write
/// fault through ext4's `page_mkwrite`, a quarter of a replicated trade service's thread.
public final class RetryIndex {
    /// The index file's path.
    public let path: String
    /// Every journal record up to this sequence has its entry in the table (0: replay the whole journal).
    public private(set) var coveredThrough: UInt64
    /// Entries in the table: exact, except after a crash, when entries that reached the file after the last
    /// checkpoint are not counted until the next doubling recounts them (so the load can pass 0.5 by that much).
    public private(set) var count: Int
    /// Why the file was replaced by an empty one at open (missing, damaged, wrong version); nil when it was used.
    public let rebuiltReason: String?
    /// Table doublings since open, and how long the last one took in nanoseconds (new file, rehash, sync, rename).
    public private(set) var growths = 0
    public private(set) var lastGrowthNanos: Int64 = 0
    /// How long the last doubling held the inserting thread: all of it for one made in place; for one built in the
    /// background, its take-over (the entries inserted meanwhile placed) and any wait for it.
    public private(set) var lastGrowthPauseNanos: Int64 = 0
    /// Tables of at least this many slots double in the background (see `insert`).
    public let backgroundGrowthFrom: Int
    /// Whether a doubling is being built in the background.
    public var growing: Bool { growth != nil }
    private var growth: Growth?
    /// The last doubling that failed (a full disk, say), if the table is still below its hard limit; retried later.
    public private(set) var growthFailure: JournalError?

    private var file: IndexFile
    private var nextGrowthAttempt = 0
    /// The digest of the entries up to `coveredThrough` (the header's, checked at the open: an entry lost or
    /// changed on the disk makes the file unusable, and it is rebuilt from the journal).
    private var committedDigest: UInt64 = 0
    /// The digest of the entries up to `cutThrough` (the last checkpoint's cut, at or past `coveredThrough`), and
    /// the parts of the entries after it, folded in at the next cut: no checkpoint reads the whole table.
    private var cutThrough: UInt64 = 0
    private var cutDigest: UInt64 = 0
    private var laterTerms: [(seq: UInt64, term: UInt64)] = []
    /// `PATH.lock`, flock'd for the index's life: a second process never touches a file this one has mapped (the
    /// index is opened before the journal whose LOCK would otherwise guard it).
    private var lockFD: Int32
    /// A sync of the table failed: the kernel may have dropped the pages it could not write, so no later sync of
    /// this file proves them on disk, and no checkpoint may claim more. Cleared by a doubling, which writes and
    /// syncs every entry into a new file.
    private var syncFailure: JournalError?

    /// Slots in the table (a power of two).
    public var capacity: Int { file.capacity }

    /// Opens the index at `path`, or creates an empty one when it is missing, damaged or of another version.
    /// - Parameters:
    ///   - path: the index file, normally `DATA/journal/retry.idx`; its directory is created if needed.
    ///   - initialCapacity: slots of a new table (rounded up to a power of two, at least 64). Size it for the
    ///     entries of a day (2 slots each) and the table never grows while trading.
    ///   - backgroundGrowthFrom: tables of at least this many slots (16 MiB of table for the default) double on a
    ///     thread of their own; smaller ones double in place, which takes a few milliseconds.
    /// - Throws: `JournalError.io` naming the path; `.diskFull` when a new file cannot be allocated.
    /// - Complexity: O(capacity) for a valid file (its table is read and its shape checked); O(initialCapacity)
    ///   file allocation otherwise.
    public init(path: String, initialCapacity: Int = 1 << 16, backgroundGrowthFrom: Int = 1 << 20) throws(JournalError) {
        self.path = path
        self.backgroundGrowthFrom = backgroundGrowthFrom
        let dir = FileIO.directory(of: path)
        try FileIO.makeDirectories(dir)
        let lockFD = try FileIO.open(path + ".lock", O_RDWR | O_CREAT)
        if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            Glibc.close(lockFD)
            throw JournalError.io(operation: "flock (is another process using this index?)", path: path + ".lock", errno: e)
        }
        var unlock = true
        defer { if unlock { Glibc.close(lockFD) } }
        self.lockFD = lockFD
        for leftover in [path + ".tmp", path + ".grow"] where FileIO.exists(leftover) { unlink(leftover) }
        let opened: IndexFile
        let reason: String?
        var later: [(seq: UInt64, term: UInt64)] = []
        switch try IndexFile.open(path: path) {
        case .valid(let f, let laterTerms):
            opened = f; reason = nil; later = laterTerms
        case .unusable(let why):
            let capacity = max(IndexFile.minimumCapacity, RetryIndex.powerOfTwo(atLeast: initialCapacity))
            opened = try IndexFile.create(path: path + ".tmp", capacity: capacity, seed: UInt64.random(in: .min ... .max),
                                          count: 0, coveredThrough: 0, zeroFilled: true)
            try opened.writeDirtyPages()
            try opened.syncData()
            try FileIO.rename(path + ".tmp", path)
            try FileIO.syncDirectory(dir)
            opened.path = path
            reason = why
        }
        file = opened
        count = opened.headerCount
        coveredThrough = opened.headerCoveredThrough
        committedDigest = opened.headerDigest
        cutThrough = coveredThrough
        cutDigest = committedDigest
        laterTerms = later
        rebuiltReason = reason
        unlock = false
    }

    // MARK: - Keys and hashing

    /// The key of a retry: trader, a zero byte, client order id. (Client order ids are printable ASCII; were a key
    /// ever ambiguous, it would only offer `verify` a record it then rejects.)
    public static func key(trader: String, clientOrderID: String) -> [UInt8] {
        var k = [UInt8]()
        k.reserveCapacity(trader.utf8.count + 1 + clientOrderID.utf8.count)
        k.append(contentsOf: trader.utf8); k.append(0); k.append(contentsOf: clientOrderID.utf8)
        return k
    }

    /// The key's 64-bit hash under this file's seed.
    func hash(_ key: UnsafeRawBufferPointer) -> UInt64 { RetryIndex.hash(key, seed: file.seed) }

    /// A keyed 64-bit hash (multiply-fold mixing over little-endian 8-byte words, as wyhash): part of the file
    /// format, so changing it needs a new version. The per-file random seed keeps a trader from choosing client
    /// order ids that collide on purpose (long probe runs) without reading the file; it is not a MAC.
    static func hash(_ key: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        @inline(__always) func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
            let r = a.multipliedFullWidth(by: b)
            return r.high ^ r.low
        }
        let p0: UInt64 = 0xa076_1d64_78bd_642f, p1: UInt64 = 0xe703_7ed1_a0b4_28db
        let p2: UInt64 = 0x8ebc_6af0_9c88_c6e3, p3: UInt64 = 0x5899_65cc_7537_4cc3
        let n = key.count
        var h = mix(seed ^ p0, UInt64(truncatingIfNeeded: n) ^ p1)
        var i = 0
        while i &+ 8 <= n {
            h = mix(h ^ UInt64(littleEndian: key.loadUnaligned(fromByteOffset: i, as: UInt64.self)), p2)
            i &+= 8
        }
        if i < n {
            var tail: UInt64 = 0, shift: UInt64 = 0
            while i < n { tail |= UInt64(key[i]) << shift; shift &+= 8; i &+= 1 }
            h = mix(h ^ tail, p3)
        }
        return mix(h ^ p0, p2 ^ p3)
    }

    // MARK: - Lookup and insert

    /// The sequence of the first entry for `key` that `verify` accepts, or nil.
    /// - Parameters:
    ///   - key: the retry key (`RetryIndex.key(trader:clientOrderID:)`).
    ///   - verify: called with each candidate's sequence, in probe order; returns whether that record really is
    ///     this key's (the caller compares the record's trader and client order id; a sequence after the journal's
    ///     end, or not yet durable and not in the caller's in-flight list, is not). Rejecting one continues the probe.
    /// - Throws: only what `verify` throws.
    /// - Complexity: O(1) expected: about 2.5 slots probed at the 0.5 load factor, one `verify` per entry whose
    ///   64-bit hash equals the key's (almost always only the key's own entries).
    public func lookup<E: Error>(_ key: UnsafeRawBufferPointer, verify: (UInt64) throws(E) -> Bool) throws(E) -> UInt64? {
        try lookup(hash: hash(key), verify: verify)
    }

    /// `lookup` for a key held in an array.
    public func lookup<E: Error>(_ key: [UInt8], verify: (UInt64) throws(E) -> Bool) throws(E) -> UInt64? {
        let h = key.withUnsafeBytes { hash($0) }
        return try lookup(hash: h, verify: verify)
    }

    func lookup<E: Error>(hash h: UInt64, verify: (UInt64) throws(E) -> Bool) throws(E) -> UInt64? {
        let slots = file.slots, mask = file.capacity &- 1
        var i = Int(truncatingIfNeeded: h) & mask
        for _ in 0..<file.capacity {
            let seq = UInt64(littleEndian: slots[2 &* i &+ 1])
            if seq == 0 { return nil }
            if UInt64(littleEndian: slots[2 &* i]) == h, try verify(seq) { return seq }
            i = (i &+ 1) & mask
        }
        return nil
    }

    /// Adds the entry `key` → `seq` unless that exact pair is already there. Not durable by itself: a checkpoint
    /// makes it so, and until then the journal replay after `coveredThrough` restores it.
    /// - Returns: whether a new entry was written.
    /// - Throws: `.diskFull` or `.io` from a doubling of the table, only once the table is past its hard limit of
    ///   7/8 full (below it a failed doubling is kept in `growthFailure`, the entry goes in, and the doubling is
    ///   retried after capacity/64 more entries; at the limit every insert retries it).
    /// - Complexity: O(1) expected. When the entries pass half the slots the table doubles: a new file of twice
    ///   the size, every entry rehashed into it, synced. A table of `backgroundGrowthFrom` slots or more doubles on
    ///   a thread of its own (its dirty pages are written to its file first, and the new table is filled from
    ///   that file), while inserts go on into the old table and are noted; the insert that finds it done places
    ///   the noted ones into the new table and renames it into place. Only an insert that reaches the hard limit
    ///   first waits for it. See `lastGrowthPauseNanos` and docs/STORAGE.md.
    @discardableResult
    public func insert(_ key: UnsafeRawBufferPointer, seq: UInt64) throws(JournalError) -> Bool {
        try insert(hash: hash(key), seq: seq)
    }

    /// `insert` for a key held in an array.
    @discardableResult
    public func insert(_ key: [UInt8], seq: UInt64) throws(JournalError) -> Bool {
        let h = key.withUnsafeBytes { hash($0) }
        return try insert(hash: h, seq: seq)
    }

    func insert(hash h: UInt64, seq: UInt64) throws(JournalError) -> Bool {
        precondition(seq != 0, "journal sequences start at 1")
        // Past the hard limit every insert retries the doubling: no entry can go in until one succeeds.
        var atHardLimit = (count &+ 1) &* 8 > file.capacity &* 7
        if let g = growth, atHardLimit || g.finished.load(ordering: .acquiring) {
            finishGrowth()
            atHardLimit = (count &+ 1) &* 8 > file.capacity &* 7
        }
        if growth == nil && (count &+ 1) &* 2 > file.capacity && (count >= nextGrowthAttempt || atHardLimit) {
            // From the file only when it can be trusted to hold the table: after a failed sync it may not.
            if !atHardLimit && file.capacity >= backgroundGrowthFrom && syncFailure == nil {
                startGrowth()
            } else {
                do {
                    try grow()
                    growthFailure = nil
                } catch {
                    growthFailure = error
                    nextGrowthAttempt = count &+ max(1, file.capacity / 64)
                    if atHardLimit { throw error }
                }
            }
        }
        let added = file.place(hash: h, seq: seq)
        if added {
            count &+= 1
            growth?.since.append((h, seq))
            let term = IndexFile.digestTerm(hash: h, seq: seq)
            if seq > cutThrough {
                laterTerms.append((seq, term))
            } else {
                // Not the recovery contract's order (every entry up to a coverage is in before it is claimed), but
                // kept right: the next header's digest has it.
                cutDigest &+= term
                if seq <= coveredThrough { committedDigest &+= term }
            }
        }
        return added
    }

    // MARK: - Durability

    /// Makes every entry inserted so far durable, then records that the journal up to `coveredThrough` is in the
    /// table: the dirty pages are written and synced (`pwrite`, `fdatasync`), then the header is written and
    /// synced, so after a crash the header never claims more than the file holds.
    /// - Parameter coveredThrough: a sequence whose record, and every one before it, has been inserted (normally
    ///   the journal's durable sequence once its records' keys are in).
    /// - Throws: `.io` or `.diskFull` naming the path; the header then keeps its previous value, and every later
    ///   checkpoint throws the same error until the table doubles or the index is reopened (the next start replays
    ///   from the last checkpoint that succeeded; lookups and inserts go on meanwhile).
    /// - Complexity: writes the pages dirtied since the last checkpoint (one 4 KiB page per insert at most).
    public func checkpoint(coveredThrough seq: UInt64) throws(JournalError) {
        let pending = try beginCheckpoint(coveredThrough: seq)
        do { try pending.syncPages() } catch { checkpointFailed(error); throw error }
        try pending.writeHeader()
        checkpointCommitted(pending)
    }

    /// `checkpoint` in halves, so that its syncs run off the thread that inserts: `beginCheckpoint` writes the
    /// dirty pages (a consistent cut of the table, on the inserting thread); the returned checkpoint's `syncPages`
    /// and then `writeHeader` may run on another thread while inserts and lookups go on; `checkpointCommitted`
    /// (or `checkpointFailed`, when `syncPages` threw) then records it, on the inserting thread again.
    ///
    /// One at a time, and nothing else may write the header before it is recorded: a `journalEnds` that lowers
    /// the coverage must not be overwritten by a late header that claims more (the caller waits for the
    /// checkpoint first). A table that doubles meanwhile is harmless: the checkpoint's header goes to the file it
    /// began on (replaced, its descriptor kept open by the checkpoint), and the coverage is not raised.
    /// - Throws: as `checkpoint`, for the pages' writes (no sync has happened yet).
    public func beginCheckpoint(coveredThrough seq: UInt64) throws(JournalError) -> PendingCheckpoint {
        // A doubling built meanwhile is in place already: checkpoint the table that is.
        if let g = growth, g.finished.load(ordering: .acquiring) { finishGrowth() }
        if let failure = syncFailure { throw failure }
        let written: [(offset: Int64, length: Int)]
        do { written = try file.writeDirtyPages() } catch { syncFailure = error; throw error }
        cut(through: seq)
        return PendingCheckpoint(file: file, count: count, seq: seq, digest: cutDigest, written: written)
    }

    /// Tells the index that every journal record up to `seq` has its entry in the table (a replay in order says so
    /// as it goes): the running digest folds in the parts it noted up to there, so a long replay does not hold 16
    /// bytes an entry until its closing checkpoint. Claims nothing on the disk; an entry up to `seq` inserted after
    /// all the same still counts.
    public func noteInserted(through seq: UInt64) {
        if seq > cutThrough { cut(through: seq) }
    }

    /// Entries whose digest parts are noted, waiting for a cut (for tests).
    var notedParts: Int { laterTerms.count }

    /// Moves the running digest's cut to `seq`: the parts of the entries up to it are folded in (a coverage that
    /// went back, which checkpoints never claim, is summed from the table).
    private func cut(through seq: UInt64) {
        guard seq >= cutThrough else {
            (cutDigest, laterTerms) = file.digest(through: seq)
            cutThrough = seq
            return
        }
        var kept = 0
        for e in laterTerms {
            if e.seq <= seq { cutDigest &+= e.term } else { laterTerms[kept] = e; kept += 1 }
        }
        laterTerms.removeLast(laterTerms.count - kept)
        cutThrough = seq
    }

    /// A checkpoint begun by `beginCheckpoint`: its pages are written, its syncs and header are to come.
    public struct PendingCheckpoint: @unchecked Sendable {
        fileprivate let file: IndexFile
        fileprivate let count: Int
        /// The coverage its header claims.
        public let seq: UInt64
        /// The digest of the entries up to `seq`, at the cut.
        fileprivate let digest: UInt64
        /// The file's ranges `beginCheckpoint` wrote.
        fileprivate let written: [(offset: Int64, length: Int)]
        /// `fdatasync` of the pages written by `beginCheckpoint` (and of nothing newer: none are written until it
        /// is recorded).
        public func syncPages() throws(JournalError) { try file.syncData() }

        /// `syncPages`, the pages written back to the device first in 256 KiB steps, each done before the next
        /// and followed by a pause of four times its length (at most 20 ms): inserts scatter over the whole table,
        /// so a checkpoint under load writes most of it (64 MiB for the default), and one `fdatasync` of that
        /// held the device for ~150 ms, behind which every journal commit waited (BENCH-HISTORY J6). Steps keep
        /// a commit's wait to one step's.
        /// - Parameter hurry: read before each pause; once true, the rest is written back without pauses.
        public func syncPagesPaced(hurry: () -> Bool = { false }) throws(JournalError) {
            let step = 256 << 10
            for r in written {
                var done = 0
                while done < r.length {
                    let n = min(step, r.length - done)
                    let t0 = tw_monotonic_ns()
                    let e = tw_write_back_range(file.fd, r.offset + Int64(done), Int64(n))
                    if e != 0 { throw JournalError.io(operation: "sync_file_range", path: file.path, errno: e) }
                    done += n
                    if !hurry() { usleep(UInt32(min(20_000, max(0, 4 * (tw_monotonic_ns() - t0)) / 1000))) }
                }
            }
            try file.syncData()
        }
        /// The header (count and coverage at the cut), written and synced.
        public func writeHeader() throws(JournalError) {
            try file.writeHeader(count: count, coveredThrough: seq, digest: digest)
            try file.syncData()
        }
    }

    /// Records a checkpoint whose header was written and synced.
    public func checkpointCommitted(_ c: PendingCheckpoint) {
        if c.file === file { coveredThrough = c.seq; committedDigest = c.digest }
    }

    /// Records a checkpoint whose page sync failed: every later one throws the same (a failed `fdatasync` may have
    /// dropped the pages) until the table doubles or the index is reopened.
    public func checkpointFailed(_ error: JournalError) { syncFailure = error }

    /// Tells the index the journal now ends at `lastSequence` (recovery cut a torn tail, or an operator truncated
    /// it): `coveredThrough` is brought down to it at once, durably, so records journaled later under the same
    /// sequences are replayed into the table after a crash. Entries after it stay and fail `verify`.
    /// - Throws: `.io` naming the path.
    public func journalEnds(at lastSequence: UInt64) throws(JournalError) {
        // A doubling in flight carries the coverage of its start into the new file's header: take it over first,
        // so that the lowered coverage is the one that lasts.
        finishGrowth()
        guard coveredThrough > lastSequence else { return }
        // The entries up to it are in the file (the last checkpoint covered more); only the header is written, so
        // it keeps the count the file's pages hold. The cut goes back with the coverage (summed from the table).
        cut(through: lastSequence)
        try file.writeHeader(count: file.writtenCount, coveredThrough: lastSequence, digest: cutDigest)
        try file.syncData()
        coveredThrough = lastSequence
        committedDigest = cutDigest
    }

    // MARK: - Growth

    /// A doubling built on a thread of its own: the new table filled from the old one's file, written and synced
    /// as `PATH.grow`. `since` holds the entries inserted meanwhile (the inserting thread's); the thread sets
    /// `outcome` and then `finished`, and is joined before `outcome` is read.
    private final class Growth: @unchecked Sendable {
        let old: IndexFile
        let coveredThrough: UInt64
        /// The digest of the entries up to `coveredThrough`: the new file's header claims both.
        let digest: UInt64
        let started = tw_monotonic_ns()
        var since: [(hash: UInt64, seq: UInt64)] = []
        var thread = pthread_t()
        let finished = Atomic<Bool>(false)
        var outcome: Result<(file: IndexFile, count: Int), JournalError>?
        init(old: IndexFile, coveredThrough: UInt64, digest: UInt64) {
            self.old = old; self.coveredThrough = coveredThrough; self.digest = digest
        }
    }

    /// Writes the table's dirty pages to its file (so the file holds every entry so far) and starts the thread that
    /// builds the doubled table from it. A failed write is kept as `growthFailure` (and as a failed sync: the file
    /// may not hold those pages, so the next doubling is made in place, from memory).
    private func startGrowth() {
        do { _ = try file.writeDirtyPages() } catch {
            syncFailure = error
            growthFailure = error
            nextGrowthAttempt = count &+ max(1, file.capacity / 64)
            return
        }
        let g = Growth(old: file, coveredThrough: coveredThrough, digest: committedDigest)
        let path = self.path
        g.thread = startThread {
            _ = tw_set_thread_name("tw-index-grow")
            do throws(JournalError) {
                let built = try RetryIndex.doubled(g.old, at: path + ".grow", coveredThrough: g.coveredThrough, digest: g.digest)
                // In place before the take-over: the new file claims the coverage of the doubling's start, which
                // its entries hold, so a crash from here on opens it and replays from there. A checkpoint of the
                // old table meanwhile writes to a file no longer at `path`, harmlessly.
                do throws(JournalError) { try FileIO.rename(path + ".grow", path) } catch { unlink(path + ".grow"); throw error }
                built.file.path = path
                // Until the directory is synced a crash may find the old table, as valid a cache of the journal.
                _ = try? FileIO.syncDirectory(FileIO.directory(of: path))
                g.outcome = .success(built)
            } catch {
                g.outcome = .failure(error)
            }
            g.finished.store(true, ordering: .releasing)
        }
        growth = g
    }

    /// The doubled table of `old`, read from its file (a page being rewritten meanwhile by a checkpoint is read
    /// whole or in parts; either way every entry it held at the start is there, and a slot read half-written is
    /// at worst a false candidate, which `verify` rejects), written and synced at `path` with its header.
    private static func doubled(_ old: IndexFile, at path: String, coveredThrough: UInt64,
                                digest: UInt64) throws(JournalError) -> (file: IndexFile, count: Int) {
        let fresh = try IndexFile.create(path: path, capacity: old.capacity &* 2, seed: old.seed, count: 0,
                                         coveredThrough: coveredThrough)
        var n = 0
        do throws(JournalError) {
            let chunk = min(old.capacity, 1 << 16)   // slots a read: 1 MiB
            let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 &* chunk)
            defer { buffer.deallocate() }
            var first = 0
            while first < old.capacity {
                let bytes = chunk &* IndexFile.slotBytes
                let at = Int64(IndexFile.headerBytes &+ first &* IndexFile.slotBytes)
                guard try FileIO.pread(old.fd, into: UnsafeMutableRawBufferPointer(start: buffer, count: bytes), at: at, path: old.path) == bytes else {
                    throw JournalError.io(operation: "pread (the table ends early)", path: old.path, errno: EIO)
                }
                for i in 0..<chunk {
                    let seq = UInt64(littleEndian: buffer[2 &* i &+ 1])
                    if seq != 0, fresh.place(hash: UInt64(littleEndian: buffer[2 &* i]), seq: seq) { n &+= 1 }
                }
                first &+= chunk
            }
            _ = try fresh.writeDirtyPages()
            try fresh.syncData()
            try fresh.writeHeader(count: n, coveredThrough: coveredThrough, digest: digest)
            try fresh.syncData()
        } catch {
            unlink(path)
            throw error
        }
        return (fresh, n)
    }

    /// Takes over the doubling built in the background (already renamed into place), waiting for it if it is not
    /// done: the entries inserted meanwhile are placed into the new table (dirty, for the next checkpoint), and
    /// the coverage becomes that of the doubling's start, which the new file's header claims. A failed one is
    /// kept as `growthFailure` and tried again after capacity/64 more entries. Inserts, checkpoints (once it is
    /// done) and `journalEnds` call it; call it to wait for a doubling at a moment of one's choosing.
    public func finishGrowth() {
        guard let g = growth else { return }
        growth = nil
        let pauseStart = tw_monotonic_ns()
        pthread_join(g.thread, nil)
        switch g.outcome! {
        case .failure(let error):
            growthFailure = error
            nextGrowthAttempt = count &+ max(1, file.capacity / 64)
        case .success(let built):
            var n = built.count
            for e in g.since where built.file.place(hash: e.hash, seq: e.seq) { n &+= 1 }
            file = built.file
            count = n
            coveredThrough = g.coveredThrough
            committedDigest = g.digest
            syncFailure = nil
            growthFailure = nil
            growths &+= 1
            let now = tw_monotonic_ns()
            lastGrowthNanos = now &- g.started
            lastGrowthPauseNanos = now &- pauseStart
        }
    }

    /// Doubles the table in place: a new file beside the old one, every entry rehashed into it, synced, renamed over
    /// the old one, directory synced. The header keeps the old `coveredThrough` (the new table holds at least that
    /// much).
    private func grow() throws(JournalError) {
        let start = tw_monotonic_ns()
        let old = file
        let tmp = path + ".grow"
        let fresh = try IndexFile.create(path: tmp, capacity: old.capacity &* 2, seed: old.seed, count: 0,
                                         coveredThrough: coveredThrough)
        var n = 0
        do {
            let from = old.slots
            for i in 0..<old.capacity {
                let seq = UInt64(littleEndian: from[2 &* i &+ 1])
                if seq != 0, fresh.place(hash: UInt64(littleEndian: from[2 &* i]), seq: seq) { n &+= 1 }
            }
            try fresh.writeDirtyPages()
            try fresh.syncData()
            try fresh.writeHeader(count: n, coveredThrough: coveredThrough, digest: committedDigest)
            try fresh.syncData()
            try FileIO.rename(tmp, path)
        } catch {
            unlink(tmp)
            throw error
        }
        // Renamed: the new table is the index file now, whatever the directory sync says.
        fresh.path = path
        file = fresh   // the old mapping and descriptor go with the last reference
        count = n
        syncFailure = nil
        try FileIO.syncDirectory(FileIO.directory(of: path))
        growths &+= 1
        lastGrowthNanos = tw_monotonic_ns() &- start
        lastGrowthPauseNanos = lastGrowthNanos
    }

    static func powerOfTwo(atLeast n: Int) -> Int {
        var c = 1
        while c < n { c <<= 1 }
        return c
    }

    /// Lets another `RetryIndex` open the file (the lock is otherwise held until this one is freed). Use nothing
    /// of this one afterwards.
    public func close() {
        // A doubling in flight is waited for: its file is in place if it succeeded (the next open reads it and
        // replays from the coverage of its start), the old one if not.
        if let g = growth {
            growth = nil
            pthread_join(g.thread, nil)
        }
        if lockFD >= 0 { Glibc.close(lockFD); lockFD = -1 }
    }

    deinit { close() }
}

/// The index file: its header page and its table of slots, the table held in memory. The one owner of the descriptor
/// and the table.
///
/// ```
/// 0      4096                                   4096 + 16·capacity
/// +------+-------------+-------------+-----+-------------+
/// |header| slot 0      | slot 1      | ... | slot cap-1  |
/// +------+-------------+-------------+-----+-------------+
///        | u64 hash | u64 sequence (0: empty) |
/// ```
final class IndexFile {
    /// Header fields, each after the previous one; the CRC32C covers every byte before it.
    enum Header {
        static let magic = 0                       // u64 "TWRIDX01"
        static let version = magic + 8             // u32
        static let headerSize = version + 4        // u32
        static let capacity = headerSize + 4       // u64, slots, a power of two
        static let count = capacity + 8            // u64, entries when the header was written
        static let coveredThrough = count + 8      // u64
        static let seed = coveredThrough + 8       // u64, the hash key
        static let writtenAt = seed + 8            // i64, ns since the epoch
        static let digest = writtenAt + 8          // u64, the digest of the entries up to coveredThrough
        static let crc = digest + 8                // u32 CRC32C of bytes [0, crc), then u32 zero
        static let end = crc + 8
    }
    /// The table starts on its own page, so a header write never shares a page with slots.
    static let headerBytes = 4096
    static let slotBytes = 16
    static let version: UInt32 = 2
    static let minimumCapacity = 64
    /// Larger capacities are refused as damage (2^40 slots would be a 16 TiB file).
    static let maximumCapacity = 1 << 40
    /// `TWRIDX01` read as a little-endian u64.
    static let magic = JournalFormat.magic("TWRIDX01")

    var path: String
    let fd: Int32
    let capacity: Int
    let seed: UInt64
    /// Pairs of little-endian words (hash, sequence), `capacity` of them, in anonymous memory: the file's table
    /// as of the last `sync`, plus what was placed since.
    /// - warning: valid only while this object lives; never keep it past a growth.
    let slots: UnsafeMutablePointer<UInt64>
    let tableBytes: Int
    let headerCount: Int
    let headerCoveredThrough: UInt64
    let headerDigest: UInt64
    /// The count in the header last written: entries the file's pages hold at least (every header is written after
    /// the pages of its count), so a header rewritten for another coverage keeps it (`RetryIndex.journalEnds`).
    private(set) var writtenCount: Int
    /// One bit per 4 KiB page of the table placed into since the last `sync`.
    private var dirty: [UInt64]

    static let pageBytes = 4096
    static let slotsPerPage = pageBytes / slotBytes

    private init(path: String, fd: Int32, capacity: Int, seed: UInt64, count: Int, coveredThrough: UInt64,
                 digest: UInt64) throws(JournalError) {
        let tableBytes = capacity * IndexFile.slotBytes
        guard let p = mmap(nil, tableBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw JournalError.fromErrno("mmap", path)   // the caller still owns and closes `fd`
        }
        // Random probes over tens of MiB: huge pages spare a TLB miss on most of them; and the table is made
        // resident now, so no insert or lookup on the service thread takes a fault (hints; failures are fine).
        _ = madvise(p, tableBytes, 14)   // MADV_HUGEPAGE
        _ = madvise(p, tableBytes, 23)   // MADV_POPULATE_WRITE (Linux 5.14)
        self.path = path; self.fd = fd; self.capacity = capacity; self.seed = seed; self.tableBytes = tableBytes
        slots = p.bindMemory(to: UInt64.self, capacity: 2 * capacity)
        headerCount = count; headerCoveredThrough = coveredThrough; headerDigest = digest; writtenCount = count
        let pages = (tableBytes + IndexFile.pageBytes - 1) / IndexFile.pageBytes
        dirty = [UInt64](repeating: 0, count: (pages + 63) / 64)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(slots), tableBytes)
        Glibc.close(fd)
    }

    /// Opens and reads a valid index file, or says why it cannot be used (missing, short, damaged, other version).
    enum Opened {
        /// The file, and the digest parts of its entries after the header's coverage (`damage()`'s).
        case valid(IndexFile, laterTerms: [(seq: UInt64, term: UInt64)])
        /// Why the file cannot be used; the caller replaces it.
        case unusable(String)
    }

    static func open(path: String) throws(JournalError) -> Opened {
        guard FileIO.exists(path) else { return .unusable("no index file") }
        let fd = try FileIO.open(path, O_RDWR)
        var ok = false
        defer { if !ok { Glibc.close(fd) } }
        let size = try FileIO.fileSize(fd, path: path)
        guard size >= Int64(headerBytes) else { return .unusable("\(size) bytes, shorter than the \(headerBytes)-byte header") }
        var h = [UInt8](repeating: 0, count: Header.end)
        _ = try FileIO.pread(fd, into: &h, count: Header.end, at: 0, path: path)
        func u64(_ o: Int) -> UInt64 { h.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) } }
        func u32(_ o: Int) -> UInt32 { h.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt32.self)) } }
        guard u64(Header.magic) == magic else { return .unusable("bad magic") }
        let crc = h.withUnsafeBytes { crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<Header.crc])) }
        guard u32(Header.crc) == crc else { return .unusable("header CRC32C mismatch") }
        guard u32(Header.version) == version else { return .unusable("version \(u32(Header.version)), expected \(version)") }
        guard u32(Header.headerSize) == UInt32(headerBytes) else { return .unusable("header size \(u32(Header.headerSize))") }
        let capacity = u64(Header.capacity), count = u64(Header.count)
        guard capacity >= UInt64(minimumCapacity), capacity <= UInt64(maximumCapacity), capacity & (capacity - 1) == 0,
              count <= capacity else { return .unusable("capacity \(capacity) with \(count) entries") }
        let expected = Int64(headerBytes) + Int64(capacity) * Int64(slotBytes)
        guard size == expected else { return .unusable("\(size) bytes, expected \(expected) for \(capacity) slots") }
        let file = try IndexFile(path: path, fd: fd, capacity: Int(capacity), seed: u64(Header.seed), count: Int(count),
                                 coveredThrough: u64(Header.coveredThrough), digest: u64(Header.digest))
        ok = true   // the descriptor is `file`'s now: it closes it, whatever follows
        let table = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(file.slots), count: file.tableBytes)
        // The index is a cache of the journal: a table that cannot be read (a bad sector: EIO) is rebuilt from it,
        // not a reason to refuse to start.
        let read: Int
        do { read = try FileIO.pread(fd, into: table, at: Int64(headerBytes), path: path) } catch {
            return .unusable("the table cannot be read: \(error)")
        }
        guard read == file.tableBytes else { return .unusable("shorter than its table while reading it") }
        switch file.damage() {
        case .failure(let why): return .unusable(why.text)
        case .success(let laterTerms): return .valid(file, laterTerms: laterTerms)
        }
    }

    struct Damage: Error { let text: String }

    /// Damage the table shows (its slots carry no checksums): fewer entries than its header counted (a sector read
    /// back as zeros); an entry the last checkpoint covered that lies beyond an empty slot from its home (a hole
    /// cut in a probe run, which would end a lookup before the entries past it); or the covered entries not adding
    /// up to the header's digest (an entry lost or changed: garbage over a filled slot reads as another entry). A
    /// file only ever written to shows none of them, even under a checkpoint a crash cut short: slots are only
    /// filled, so every page on the disk holds at least what it held at the last completed checkpoint, and an
    /// entry that checkpoint covered had its whole run filled then. Entries placed since may lie past holes (their
    /// pages reached the disk, the run's did not) and count in no digest yet, so they are not held against the
    /// file. One pass, O(capacity), beside the read of the whole table.
    /// - Returns: the damage, or else the digest parts of the entries after the coverage, met on the way (for
    ///   `RetryIndex`'s running digest).
    func damage() -> Result<[(seq: UInt64, term: UInt64)], Damage> {
        let mask = capacity - 1
        func seq(_ i: Int) -> UInt64 { UInt64(littleEndian: slots[2 * i + 1]) }
        // From just after an empty slot, so that each run is met from its first slot (a table is below 7/8 full).
        var empty = 0
        while empty < capacity && seq(empty) != 0 { empty += 1 }
        guard empty < capacity else { return .failure(Damage(text: "no empty slot in \(capacity)")) }
        var filled = 0, runStart = -1, digest: UInt64 = 0
        var later: [(seq: UInt64, term: UInt64)] = []
        for step in 1...capacity {
            let i = (empty + step) & mask, s = seq(i)
            if s == 0 { runStart = -1; continue }
            filled += 1
            if runStart < 0 { runStart = i }
            let h = UInt64(littleEndian: slots[2 * i]), home = Int(truncatingIfNeeded: h) & mask
            guard s <= headerCoveredThrough else {
                later.append((s, IndexFile.digestTerm(hash: h, seq: s)))
                continue
            }
            if (i - home) & mask > (i - runStart) & mask {
                return .failure(Damage(text: "slot \(i) (seq \(s)) lies past an empty slot from its home slot \(home)"))
            }
            digest &+= IndexFile.digestTerm(hash: h, seq: s)
        }
        if filled < headerCount {
            return .failure(Damage(text: "\(filled) entries in the table, fewer than the \(headerCount) its header counted"))
        }
        if digest != headerDigest {
            return .failure(Damage(text: "the entries up to seq \(headerCoveredThrough) do not add up to the header's digest (an entry lost or changed)"))
        }
        return .success(later)
    }

    /// One entry's part of a digest: the digest of a set of entries is the wrapping sum of their parts, so it is
    /// kept up as entries go in, in any order, and an entry lost or changed changes it (but for 2^-64).
    @inline(__always)
    static func digestTerm(hash: UInt64, seq: UInt64) -> UInt64 {
        var x = hash ^ (seq &* 0x9E37_79B9_7F4A_7C15)
        x ^= x >> 31; x &*= 0xBF58_476D_1CE4_E5B9
        x ^= x >> 29; x &*= 0x94D0_49BB_1331_11EB
        return x ^ (x >> 32)
    }

    /// The digest of the table's entries up to `seq`, and the parts of those after it (for `RetryIndex`'s running
    /// digest). O(capacity).
    func digest(through seq: UInt64) -> (digest: UInt64, later: [(seq: UInt64, term: UInt64)]) {
        var digest: UInt64 = 0, later: [(seq: UInt64, term: UInt64)] = []
        for i in 0..<capacity {
            let s = UInt64(littleEndian: slots[2 * i + 1])
            if s == 0 { continue }
            let t = IndexFile.digestTerm(hash: UInt64(littleEndian: slots[2 * i]), seq: s)
            if s <= seq { digest &+= t } else { later.append((s, t)) }
        }
        return (digest, later)
    }

    /// A new file of `capacity` empty slots with its header, allocated on the disk up front (`posix_fallocate`), so
    /// a full disk is an error here, not at a checkpoint. Not synced.
    /// - Parameter zeroFilled: write the table's zeros through (and sync them), so that the first checkpoint
    ///   overwrites written blocks: writing into the allocated, never-written blocks `posix_fallocate` leaves held
    ///   the service thread's first checkpoint ~150 ms (BENCH-HISTORY J6), as the journal's pre-extension avoids
    ///   for its segments. A doubling need not: it writes every page its rehash filled before the rename, and a
    ///   table a quarter full (256 slots a page) leaves almost none empty.
    static func create(path: String, capacity: Int, seed: UInt64, count: Int, coveredThrough: UInt64,
                       zeroFilled: Bool = false) throws(JournalError) -> IndexFile {
        let fd = try FileIO.open(path, O_RDWR | O_CREAT | O_TRUNC)
        let bytes = headerBytes + capacity * slotBytes
        let rc = posix_fallocate(fd, 0, off_t(bytes))
        if rc != 0 {
            Glibc.close(fd); unlink(path)
            throw JournalError.fromErrno("posix_fallocate", path, rc)
        }
        if zeroFilled {
            let zeros = [UInt8](repeating: 0, count: 1 << 20)
            do throws(JournalError) {
                var at = headerBytes
                while at < bytes {
                    let n = min(zeros.count, bytes - at)
                    try FileIO.writeAll(fd, n == zeros.count ? zeros : Array(zeros[0..<n]), at: Int64(at), path: path)
                    at += n
                }
                try FileIO.syncData(fd, path: path)
            } catch {
                Glibc.close(fd); unlink(path)
                throw error
            }
        }
        let file: IndexFile
        // Empty or about to be filled: its digest is written with its entries' header (a doubling's).
        do { file = try IndexFile(path: path, fd: fd, capacity: capacity, seed: seed, count: count, coveredThrough: coveredThrough, digest: 0) }
        catch { Glibc.close(fd); unlink(path); throw error }
        // From here `file` owns the descriptor and closes it.
        do { try file.writeHeader(count: count, coveredThrough: coveredThrough, digest: 0) } catch { unlink(path); throw error }
        return file
    }

    /// Writes every header field and its CRC at the start of the file (not synced).
    func writeHeader(count: Int, coveredThrough: UInt64, digest: UInt64) throws(JournalError) {
        var bytes = [UInt8](repeating: 0, count: Header.end)
        bytes.withUnsafeMutableBytes { h in
            h.storeBytes(of: IndexFile.magic.littleEndian, toByteOffset: Header.magic, as: UInt64.self)
            h.storeBytes(of: IndexFile.version.littleEndian, toByteOffset: Header.version, as: UInt32.self)
            h.storeBytes(of: UInt32(IndexFile.headerBytes).littleEndian, toByteOffset: Header.headerSize, as: UInt32.self)
            h.storeBytes(of: UInt64(capacity).littleEndian, toByteOffset: Header.capacity, as: UInt64.self)
            h.storeBytes(of: UInt64(count).littleEndian, toByteOffset: Header.count, as: UInt64.self)
            h.storeBytes(of: coveredThrough.littleEndian, toByteOffset: Header.coveredThrough, as: UInt64.self)
            h.storeBytes(of: seed.littleEndian, toByteOffset: Header.seed, as: UInt64.self)
            h.storeBytes(of: tw_realtime_ns().littleEndian, toByteOffset: Header.writtenAt, as: Int64.self)
            h.storeBytes(of: digest.littleEndian, toByteOffset: Header.digest, as: UInt64.self)
            let crc = crc32c(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(h)[0..<Header.crc]))
            h.storeBytes(of: crc.littleEndian, toByteOffset: Header.crc, as: UInt32.self)
        }
        try FileIO.writeAll(fd, bytes, at: 0, path: path)
        writtenCount = count
    }

    /// Writes the table's dirty pages into the file, each run of adjacent ones with one `pwrite` (not synced). A
    /// page stays dirty until it is written.
    /// - Returns: the file's ranges written.
    @discardableResult
    func writeDirtyPages() throws(JournalError) -> [(offset: Int64, length: Int)] {
        let base = UnsafeRawPointer(slots)
        var written: [(offset: Int64, length: Int)] = []
        var word = 0
        while word < dirty.count {
            guard dirty[word] != 0 else { word &+= 1; continue }
            let first = word &* 64 &+ dirty[word].trailingZeroBitCount
            var end = first &+ 1
            while end < dirty.count &* 64, dirty[end >> 6] & (1 << UInt64(end & 63)) != 0 { end &+= 1 }
            let offset = first &* IndexFile.pageBytes, length = min(end &* IndexFile.pageBytes, tableBytes) &- offset
            try FileIO.writeAll(fd, UnsafeRawBufferPointer(start: base + offset, count: length),
                                at: Int64(IndexFile.headerBytes &+ offset), path: path)
            written.append((Int64(IndexFile.headerBytes &+ offset), length))
            for page in first..<end { dirty[page >> 6] &= ~(1 << UInt64(page & 63)) }
            word = end >> 6
        }
        return written
    }

    /// `fdatasync` of the file: what `writeDirtyPages` and `writeHeader` wrote.
    func syncData() throws(JournalError) { try FileIO.syncData(fd, path: path) }

    /// Linear probing from the hash's home slot: writes (hash, seq) into the first empty slot, unless the same pair
    /// is met first, and marks its page dirty. The hash is stored before the sequence, which marks the slot used.
    /// - Returns: whether a slot was written.
    @inline(__always)
    func place(hash h: UInt64, seq: UInt64) -> Bool {
        let mask = capacity &- 1
        var i = Int(truncatingIfNeeded: h) & mask
        for _ in 0..<capacity {
            let s = UInt64(littleEndian: slots[2 &* i &+ 1])
            if s == 0 {
                slots[2 &* i] = h.littleEndian
                slots[2 &* i &+ 1] = seq.littleEndian
                let page = i / IndexFile.slotsPerPage
                dirty[page >> 6] |= 1 << UInt64(page & 63)
                return true
            }
            if s == seq && UInt64(littleEndian: slots[2 &* i]) == h { return false }
            i = (i &+ 1) & mask
        }
        preconditionFailure("retry index table full (\(capacity) slots): the load factor is kept below 7/8")
    }
}
