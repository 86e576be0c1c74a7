/*
 * tether/win32_handles.h — the Win32 types the Vulkan Win32 headers need, on Linux, and the
 * tether handle contract as inline helpers. Header-only; include it before
 * <vulkan/vulkan_win32.h>:
 *
 *     #include <vulkan/vulkan_core.h>
 *     #include <tether/win32_handles.h>
 *     #include <vulkan/vulkan_win32.h>
 *
 * The contract (tether DESIGN.md, contract 2): an NT handle (OPAQUE_WIN32, D3D12_FENCE) is a
 * file descriptor that its holder owns; the HANDLE value is the fd number. CloseHandle is
 * close(), DuplicateHandle is fcntl(F_DUPFD_CLOEXEC), inheritance is the absence of
 * close-on-exec. A KMT handle (OPAQUE_WIN32_KMT) is a global value that is never closed.
 * Names are UTF-16 (WCHAR is 16 bits, as on Windows — not wchar_t).
 */
#ifndef TETHER_WIN32_HANDLES_H
#define TETHER_WIN32_HANDLES_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

/* Linux's value, for strict ISO C modes where <fcntl.h> hides it. */
#ifndef F_DUPFD_CLOEXEC
#define F_DUPFD_CLOEXEC 1030
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef void *HANDLE;
typedef uint32_t DWORD;
typedef int BOOL;
typedef uint16_t WCHAR;
typedef const WCHAR *LPCWSTR;
typedef struct HINSTANCE__ *HINSTANCE;
typedef struct HWND__ *HWND;
typedef struct HMONITOR__ *HMONITOR;

typedef struct _SECURITY_ATTRIBUTES {
    DWORD nLength;
    void *lpSecurityDescriptor;
    BOOL bInheritHandle;
} SECURITY_ATTRIBUTES, *PSECURITY_ATTRIBUTES, *LPSECURITY_ATTRIBUTES;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

/* Access rights accepted in VkExport*Win32HandleInfoKHR::dwAccess (see the README for how tether
 * maps them: without a write/modify right the handle can wait but not signal). */
#define GENERIC_ALL 0x10000000u
#define GENERIC_WRITE 0x40000000u
#define GENERIC_READ 0x80000000u
#define SYNCHRONIZE 0x00100000u
#define DXGI_SHARED_RESOURCE_READ 0x80000000u
#define DXGI_SHARED_RESOURCE_WRITE 0x00000001u
#define HANDLE_FLAG_INHERIT 0x00000001u
#define DUPLICATE_SAME_ACCESS 0x00000002u

/* The fd behind an NT handle, and back. */
static inline int tether_handle_to_fd(HANDLE handle) { return (int)(intptr_t)handle; }
static inline HANDLE tether_fd_to_handle(int fd) { return (HANDLE)(intptr_t)fd; }

/* CloseHandle: closes the fd. Never call it on a KMT handle. */
static inline BOOL CloseHandle(HANDLE handle) { return close(tether_handle_to_fd(handle)) == 0; }

/* A new handle to the same object (a new fd, close-on-exec unless inheritable); NULL on failure. */
static inline HANDLE tether_duplicate_handle(HANDLE handle, BOOL inheritable) {
    int fd = fcntl(tether_handle_to_fd(handle), F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return NULL;
    if (inheritable && fcntl(fd, F_SETFD, 0) != 0) {
        close(fd);
        return NULL;
    }
    return tether_fd_to_handle(fd);
}

/* SetHandleInformation(handle, HANDLE_FLAG_INHERIT, flags): inheritance across exec. */
static inline BOOL SetHandleInformation(HANDLE handle, DWORD mask, DWORD flags) {
    if (!(mask & HANDLE_FLAG_INHERIT)) return TRUE;
    return fcntl(tether_handle_to_fd(handle), F_SETFD, (flags & HANDLE_FLAG_INHERIT) ? 0 : FD_CLOEXEC) == 0;
}

/* GetHandleInformation: HANDLE_FLAG_INHERIT when the fd survives exec. */
static inline BOOL GetHandleInformation(HANDLE handle, DWORD *flags) {
    int fd_flags = fcntl(tether_handle_to_fd(handle), F_GETFD);
    if (fd_flags < 0) return FALSE;
    *flags = (fd_flags & FD_CLOEXEC) ? 0 : HANDLE_FLAG_INHERIT;
    return TRUE;
}

#ifdef __cplusplus
}
#endif

#endif /* TETHER_WIN32_HANDLES_H */
