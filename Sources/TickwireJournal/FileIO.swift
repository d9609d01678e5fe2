import CTickwireSys
#if canImport(Glibc)
import Glibc
#endif

/// Thin, typed wrappers over the few system calls the journal makes; each names the call and the path on failure.
enum FileIO {
    static func open(_ path: String, _ flags: Int32, mode: UInt32 = 0o644) throws(JournalError) -> Int32 {
        while true {
            let fd = tw_open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw JournalError.fromErrno("open", path)
        }
    }

    /// Writes every byte at the current file position, or at `offset` when one is given (the file position is
    /// then neither used nor moved). The corresponding C functions are `write` and `pwrite`.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64? = nil,
                         path: String) throws(JournalError) {
        var done = 0
        while done < bytes.count {
            let p = bytes.baseAddress! + done, left = bytes.count - done
            let n = offset.map { Glibc.pwrite(fd, p, left, off_t($0) + off_t(done)) } ?? Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw JournalError.fromErrno(offset == nil ? "write" : "pwrite", path)
            }
            if n == 0 { throw JournalError.diskFull(path: path, errno: ENOSPC) }
            done += n
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int64? = nil, path: String) throws(JournalError) {
        let r: Result<Void, JournalError> = bytes.withUnsafeBytes { b in
            do { try writeAll(fd, b, at: offset, path: path); return .success(()) } catch { return .failure(error as! JournalError) }
        }
        try r.get()
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file. The corresponding C function is `pread`.
    static func pread(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer, at offset: Int64, path: String) throws(JournalError) -> Int {
        var done = 0
        while done < buf.count {
            let n = Glibc.pread(fd, buf.baseAddress! + done, buf.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw JournalError.fromErrno("pread", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads into `array[0..<count]` at `offset`; returns the bytes read (fewer only at end of file).
    static func pread(_ fd: Int32, into array: inout [UInt8], count: Int, at offset: Int64, path: String) throws(JournalError) -> Int {
        let r: Result<Int, JournalError> = array.withUnsafeMutableBytes { b in
            do { return .success(try pread(fd, into: UnsafeMutableRawBufferPointer(rebasing: b[0..<count]), at: offset, path: path)) }
            catch { return .failure(error as! JournalError) }
        }
        return try r.get()
    }

    /// The whole file's bytes.
    static func readFile(_ path: String) throws(JournalError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { Glibc.close(fd) }
        let size = try fileSize(fd, path: path)
        var out = [UInt8](repeating: 0, count: Int(size))
        let r: Result<Int, JournalError> = out.withUnsafeMutableBytes { b in
            do { return .success(try pread(fd, into: b, at: 0, path: path)) } catch { return .failure(error as! JournalError) }
        }
        let n = try r.get()
        if n < out.count { out.removeLast(out.count - n) }
        return out
    }

    static func fileSize(_ fd: Int32, path: String) throws(JournalError) -> Int64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw JournalError.fromErrno("fstat", path) }
        return Int64(st.st_size)
    }

    static func truncate(_ fd: Int32, to size: Int64, path: String) throws(JournalError) {
        if ftruncate(fd, off_t(size)) != 0 { throw JournalError.fromErrno("ftruncate", path) }
    }

    static func seek(_ fd: Int32, to offset: Int64, path: String) throws(JournalError) {
        if lseek(fd, off_t(offset), SEEK_SET) < 0 { throw JournalError.fromErrno("lseek", path) }
    }

    /// The corresponding C function is `fdatasync`.
    static func syncData(_ fd: Int32, path: String) throws(JournalError) {
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw JournalError.fromErrno("fdatasync", path)
        }
    }

    /// Makes a directory's entries (a created, renamed or removed file) durable. The corresponding C function is `fsync`.
    static func syncDirectory(_ path: String) throws(JournalError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw JournalError.fromErrno("fsync", path) }
    }

    static func makeDirectories(_ path: String) throws(JournalError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw JournalError.fromErrno("mkdir", current) }
        }
    }

    /// File names in a directory (no `.` or `..`).
    static func list(_ path: String) throws(JournalError) -> [String] {
        guard let dir = opendir(path) else { throw JournalError.fromErrno("opendir", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func rename(_ from: String, _ to: String) throws(JournalError) {
        if Glibc.rename(from, to) != 0 { throw JournalError.fromErrno("rename", from) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Puts `bytes` at `path` so that a crash leaves the old file or the new one whole: written to `path.tmp`,
    /// `fdatasync`ed, renamed over `path`, its directory synced.
    static func replaceDurably(_ path: String, with bytes: [UInt8]) throws(JournalError) {
        let tmp = path + ".tmp"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_TRUNC)
        defer { Glibc.close(fd) }
        try writeAll(fd, bytes, path: tmp)
        try syncData(fd, path: tmp)
        try rename(tmp, path)
        try syncDirectory(directory(of: path))
    }

    /// The directory holding `path` ("." for a bare name, "/" for a file at the root).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// Starts a joinable thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        let box = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Box
        box.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}
