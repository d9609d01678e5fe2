#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file; the map is released when this goes away.
/// The corresponding C functions are `open`, `fstat`, `mmap` and `munmap`.
///
/// Only regular files are read. A FIFO, a socket or a device (`/dev/zero`, `/dev/stdin` on a pipe) has no
/// length to map and may never end: it is refused at once, naming what it is, rather than waited on. The open
/// is non-blocking so that a FIFO without a writer cannot hang it (docs/FEEDS.md, "Files").
public final class MappedFile: @unchecked Sendable {  // immutable after init
    public let path: String
    /// The file's bytes. - warning: valid while this object lives; never escape it past that.
    public let bytes: UnsafeRawBufferPointer

    /// - Throws: `FeedConfigError` naming the path and the system's reason.
    public init(path: String) throws(FeedConfigError) {
        self.path = path
        // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever if none comes.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { throw FeedConfigError("cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw FeedConfigError("cannot stat '\(path)': \(String(cString: strerror(errno)))") }
        let type = st.st_mode & S_IFMT
        if type == S_IFDIR { throw FeedConfigError("'\(path)' is a directory, not a file") }
        if type != S_IFREG {
            let what = switch type {
            case S_IFIFO: "a FIFO (named pipe)"
            case S_IFCHR: "a character device"
            case S_IFBLK: "a block device"
            case S_IFSOCK: "a socket"
            default: "not a regular file"
            }
            throw FeedConfigError("'\(path)' is \(what): captures are read whole from regular files; save the stream to a file first")
        }
        let size = Int(st.st_size)
        if size == 0 { bytes = UnsafeRawBufferPointer(start: nil, count: 0); return }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FeedConfigError("cannot map '\(path)': \(String(cString: strerror(errno)))")
        }
        _ = madvise(p, size, MADV_SEQUENTIAL)
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let p = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: p), bytes.count) }
    }

    /// Unmaps the pages of `range` (its bounds rounded down to pages), read and not to be read again: a file read
    /// once front to back otherwise keeps every page in the process's resident set to the end (13 GB for a full
    /// ITCH day). They stay in the page cache, and map again if read.
    public func letGo(_ range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = range.lowerBound / page * page, hi = min(range.upperBound, bytes.count) / page * page
        guard hi > lo, let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, MADV_DONTNEED)
    }
}
