import CTickwireSys
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor; closes it on deinit. The one owner of the descriptor.
final class OwnedFile {
    let fd: Int32
    let path: String

    /// Opens `path` (the corresponding C function is `open`).
    init(path: String, flags: Int32, mode: UInt32 = 0o644) throws(StoreError) {
        let fd = tw_open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Writes every byte, retrying short writes and EINTR.
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "write", path: path, errno: errno)
            }
            done += n
        }
    }

    func writeAll(_ bytes: [UInt8]) throws(StoreError) {
        let r: Result<Void, StoreError> = bytes.withUnsafeBytes { p in
            do { try writeAll(p); return .success(()) } catch { return .failure(error as! StoreError) }
        }
        try r.get()
    }

    /// Writes the buffers in order with one system call where possible (the corresponding C function is `writev`).
    func writeAll(_ parts: [UnsafeRawBufferPointer]) throws(StoreError) {
        var iov = parts.filter { $0.count > 0 }.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var total = parts.reduce(0) { $0 + $1.count }
        var first = 0
        while total > 0 {
            let n = iov[first...].withUnsafeBufferPointer { writev(fd, $0.baseAddress, Int32($0.count)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "writev", path: path, errno: errno)
            }
            total -= n
            var left = n
            while left > 0 && first < iov.count {
                if left >= iov[first].iov_len { left -= iov[first].iov_len; first += 1 } else {
                    iov[first].iov_base = iov[first].iov_base! + left
                    iov[first].iov_len -= left
                    left = 0
                }
            }
        }
    }

    /// Forces written data to the device (the corresponding C function is `fdatasync`).
    func syncData() throws(StoreError) {
        guard fdatasync(fd) == 0 else { throw .io(operation: "fdatasync", path: path, errno: errno) }
    }

    /// Sets the file's size (the corresponding C function is `ftruncate`).
    func truncate(to size: Int) throws(StoreError) {
        guard ftruncate(fd, off_t(size)) == 0 else { throw .io(operation: "ftruncate", path: path, errno: errno) }
    }

    func size() throws(StoreError) -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        return Int(st.st_size)
    }

    /// The file's bytes as they are now, read into memory of this process's own (the corresponding C function is
    /// `pread`): for a file another process may cut back while it is read, which a mapping would turn into SIGBUS.
    /// A cut while reading ends the bytes where the file then ended.
    func readAll() throws(StoreError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: try size())
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "pread", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        bytes.removeLast(bytes.count - done)
        return bytes
    }

    /// Moves the write position to `offset` (the corresponding C function is `lseek`).
    func seek(to offset: Int) throws(StoreError) {
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw .io(operation: "lseek", path: path, errno: errno) }
    }
}

/// A read-only memory map of a whole file; unmaps on deinit.
/// - warning: `bytes` is valid only while this object lives; never let a pointer from it outlive the map.
final class MappedFile {
    let bytes: UnsafeRawBufferPointer
    let path: String

    /// - Parameter populate: map every page at once (`MAP_POPULATE`), for a file read whole straight away: one
    ///   call instead of a fault every few pages.
    init(path: String, populate: Bool = false) throws(StoreError) {
        let file = try OwnedFile(path: path, flags: O_RDONLY)
        let size = try file.size()
        self.path = path
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), file.fd, 0), p != MAP_FAILED else {
            throw .io(operation: "mmap", path: path, errno: errno)
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let p = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: p), bytes.count) }
    }

    /// Unmaps the pages touched so far; they stay in the page cache and map again when read.
    func letGo() {
        if let p = bytes.baseAddress { _ = madvise(UnsafeMutableRawPointer(mutating: p), bytes.count, MADV_DONTNEED) }
    }
}

enum FS {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func makeDirectories(_ path: String) throws(StoreError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw .io(operation: "mkdir", path: prefix, errno: errno)
            }
        }
    }

    /// Names in a directory, sorted, without `.` and `..`; empty when it does not exist.
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names = [String]()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Makes a directory's entries (a create, rename or unlink) durable (`fsync` on the directory).
    static func syncDirectory(_ path: String) throws(StoreError) {
        let d = try OwnedFile(path: path, flags: O_RDONLY | O_DIRECTORY)
        guard fsync(d.fd) == 0 else { throw .io(operation: "fsync", path: path, errno: errno) }
    }

    static func rename(_ from: String, _ to: String) throws(StoreError) {
        guard Glibc.rename(from, to) == 0 else { throw .io(operation: "rename", path: from, errno: errno) }
    }

    static func remove(_ path: String) throws(StoreError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .io(operation: "unlink", path: path, errno: errno) }
    }

    static func removeTree(_ path: String) throws(StoreError) {
        if isDirectory(path) {
            for name in list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 || errno == ENOENT else { throw .io(operation: "rmdir", path: path, errno: errno) }
        } else {
            try remove(path)
        }
    }

    /// Writes a whole file and forces it to the device before returning.
    static func writeDurably(_ path: String, _ bytes: [UInt8]) throws(StoreError) {
        let f = try OwnedFile(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        try f.writeAll(bytes)
        try f.syncData()
    }
}

enum CRC32C {
    static func of(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return tw_crc32c(crc, base, bytes.count)
    }

    static func of(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { of($0) } }
}
