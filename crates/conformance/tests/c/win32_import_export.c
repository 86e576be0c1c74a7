/*
 * A C application of the Win32 sharing API on Linux, as a Windows application would write it:
 * <vulkan/vulkan_core.h>, tether's <tether/win32_handles.h> for the Win32 types, then
 * <vulkan/vulkan_win32.h>. Built and run by crates/conformance/tests/win32_sharing.rs
 * (`c::win32_import_export`) through the Khronos loader; VK_DRIVER_FILES names the tether driver.
 *
 * Exports a fence, a binary and a timeline semaphore as OPAQUE_WIN32 NT handles (one of them also
 * by name), a fence as an OPAQUE_WIN32_KMT value; imports them into other objects, signals and
 * waits; duplicates handles with tether_duplicate_handle, closes them with CloseHandle right after
 * the import. Exits 0 when every step worked, 1 (with a message on stderr) otherwise.
 */
#include <vulkan/vulkan_core.h>
#include <tether/win32_handles.h>
#include <vulkan/vulkan_win32.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every wait is bounded: a bug fails instead of hanging. */
static const uint64_t TIMEOUT_NS = 10ull * 1000 * 1000 * 1000;

#define CHECK(expr)                                                                            \
    do {                                                                                       \
        VkResult check_result_ = (expr);                                                       \
        if (check_result_ != VK_SUCCESS) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %d\n", __FILE__, __LINE__, #expr, (int)check_result_); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#define EXPECT(cond)                                                                           \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static PFN_vkGetFenceWin32HandleKHR get_fence_win32;
static PFN_vkImportFenceWin32HandleKHR import_fence_win32;
static PFN_vkGetSemaphoreWin32HandleKHR get_semaphore_win32;
static PFN_vkImportSemaphoreWin32HandleKHR import_semaphore_win32;

/* An ASCII string as UTF-16 (WCHAR is 16 bits, not wchar_t). */
static void to_wide(WCHAR *out, size_t capacity, const char *in) {
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < capacity; i++) out[i] = (WCHAR)(unsigned char)in[i];
    out[i] = 0;
}

static VkFence create_fence(VkDevice device, const void *next) {
    VkFenceCreateInfo info = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, .pNext = next};
    VkFence fence;
    CHECK(vkCreateFence(device, &info, NULL, &fence));
    return fence;
}

static VkSemaphore create_semaphore(VkDevice device, const void *next) {
    VkSemaphoreCreateInfo info = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = next};
    VkSemaphore semaphore;
    CHECK(vkCreateSemaphore(device, &info, NULL, &semaphore));
    return semaphore;
}

static void import_fence(VkDevice device, VkFence fence, VkExternalFenceHandleTypeFlagBits type,
                         VkFenceImportFlags flags, HANDLE handle, LPCWSTR name) {
    VkImportFenceWin32HandleInfoKHR info = {
        .sType = VK_STRUCTURE_TYPE_IMPORT_FENCE_WIN32_HANDLE_INFO_KHR,
        .fence = fence,
        .flags = flags,
        .handleType = type,
        .handle = handle,
        .name = name,
    };
    CHECK(import_fence_win32(device, &info));
}

static HANDLE export_semaphore(VkDevice device, VkSemaphore semaphore) {
    VkSemaphoreGetWin32HandleInfoKHR info = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_GET_WIN32_HANDLE_INFO_KHR,
        .semaphore = semaphore,
        .handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
    };
    HANDLE handle = NULL;
    CHECK(get_semaphore_win32(device, &info, &handle));
    EXPECT(handle != NULL);
    return handle;
}

static void import_semaphore(VkDevice device, VkSemaphore semaphore, HANDLE handle) {
    VkImportSemaphoreWin32HandleInfoKHR info = {
        .sType = VK_STRUCTURE_TYPE_IMPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR,
        .semaphore = semaphore,
        .handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
        .handle = handle,
    };
    CHECK(import_semaphore_win32(device, &info));
}

int main(void) {
    /* An instance and the tether device. */
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "tether-c-win32-test",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo instance_info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    VkInstance instance;
    CHECK(vkCreateInstance(&instance_info, NULL, &instance));
    uint32_t count = 0;
    CHECK(vkEnumeratePhysicalDevices(instance, &count, NULL));
    VkPhysicalDevice physical[16];
    if (count > 16) count = 16;
    CHECK(vkEnumeratePhysicalDevices(instance, &count, physical));
    VkPhysicalDevice tether = VK_NULL_HANDLE;
    for (uint32_t i = 0; i < count; i++) {
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(physical[i], &props);
        if (strcmp(props.deviceName, "tether CPU") == 0) tether = physical[i];
    }
    EXPECT(tether != VK_NULL_HANDLE);

    VkPhysicalDeviceExternalFenceInfo fence_query = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_FENCE_INFO,
        .handleType = VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
    };
    VkExternalFenceProperties fence_props = {.sType = VK_STRUCTURE_TYPE_EXTERNAL_FENCE_PROPERTIES};
    vkGetPhysicalDeviceExternalFenceProperties(tether, &fence_query, &fence_props);
    EXPECT(fence_props.externalFenceFeatures ==
           (VK_EXTERNAL_FENCE_FEATURE_EXPORTABLE_BIT | VK_EXTERNAL_FENCE_FEATURE_IMPORTABLE_BIT));

    float priority = 1.0f;
    VkDeviceQueueCreateInfo queue_info = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = 0,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    const char *extensions[] = {
        VK_KHR_EXTERNAL_FENCE_WIN32_EXTENSION_NAME,
        VK_KHR_EXTERNAL_SEMAPHORE_WIN32_EXTENSION_NAME,
    };
    VkPhysicalDeviceTimelineSemaphoreFeatures timeline_features = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES,
        .timelineSemaphore = VK_TRUE,
    };
    VkDeviceCreateInfo device_info = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &timeline_features,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &queue_info,
        .enabledExtensionCount = 2,
        .ppEnabledExtensionNames = extensions,
    };
    VkDevice device;
    CHECK(vkCreateDevice(tether, &device_info, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, 0, 0, &queue);
    get_fence_win32 = (PFN_vkGetFenceWin32HandleKHR)vkGetDeviceProcAddr(device, "vkGetFenceWin32HandleKHR");
    import_fence_win32 =
        (PFN_vkImportFenceWin32HandleKHR)vkGetDeviceProcAddr(device, "vkImportFenceWin32HandleKHR");
    get_semaphore_win32 =
        (PFN_vkGetSemaphoreWin32HandleKHR)vkGetDeviceProcAddr(device, "vkGetSemaphoreWin32HandleKHR");
    import_semaphore_win32 =
        (PFN_vkImportSemaphoreWin32HandleKHR)vkGetDeviceProcAddr(device, "vkImportSemaphoreWin32HandleKHR");
    EXPECT(get_fence_win32 && import_fence_win32 && get_semaphore_win32 && import_semaphore_win32);

    /* 1. A named fence, exported as an NT handle with the CTS's access rights. */
    char narrow[64];
    snprintf(narrow, sizeof narrow, "Local\\tether-c-test-%ld", (long)getpid());
    WCHAR name[64];
    to_wide(name, 64, narrow);
    SECURITY_ATTRIBUTES security = {.nLength = sizeof(SECURITY_ATTRIBUTES), .bInheritHandle = FALSE};
    VkExportFenceWin32HandleInfoKHR fence_win32 = {
        .sType = VK_STRUCTURE_TYPE_EXPORT_FENCE_WIN32_HANDLE_INFO_KHR,
        .pAttributes = &security,
        .dwAccess = DXGI_SHARED_RESOURCE_READ | DXGI_SHARED_RESOURCE_WRITE,
        .name = name,
    };
    VkExportFenceCreateInfo fence_export = {
        .sType = VK_STRUCTURE_TYPE_EXPORT_FENCE_CREATE_INFO,
        .pNext = &fence_win32,
        .handleTypes = VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
    };
    VkFence fence_a = create_fence(device, &fence_export);
    VkFenceGetWin32HandleInfoKHR get_fence = {
        .sType = VK_STRUCTURE_TYPE_FENCE_GET_WIN32_HANDLE_INFO_KHR,
        .fence = fence_a,
        .handleType = VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
    };
    HANDLE fence_handle = NULL;
    CHECK(get_fence_win32(device, &get_fence, &fence_handle));
    EXPECT(fence_handle != NULL);
    DWORD info = 0xffff;
    EXPECT(GetHandleInformation(fence_handle, &info));
    EXPECT(info == 0); /* bInheritHandle = FALSE: not inherited */

    /* A duplicate imported permanently into B, closed right after the import. */
    HANDLE duplicate = tether_duplicate_handle(fence_handle, FALSE);
    EXPECT(duplicate != NULL && duplicate != fence_handle);
    VkFence fence_b = create_fence(device, NULL);
    import_fence(device, fence_b, VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_BIT, 0, duplicate, NULL);
    EXPECT(CloseHandle(duplicate));
    /* The name imported temporarily into C (the handle is NULL). */
    VkFence fence_c = create_fence(device, NULL);
    import_fence(device, fence_c, VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_BIT, VK_FENCE_IMPORT_TEMPORARY_BIT,
                 NULL, name);
    EXPECT(vkGetFenceStatus(device, fence_b) == VK_NOT_READY);
    CHECK(vkQueueSubmit(queue, 0, NULL, fence_a));
    VkFence signaled[] = {fence_b, fence_c};
    CHECK(vkWaitForFences(device, 2, signaled, VK_TRUE, TIMEOUT_NS));
    /* B shares A's payload: resetting B resets A. */
    CHECK(vkResetFences(device, 1, &fence_b));
    EXPECT(vkGetFenceStatus(device, fence_a) == VK_NOT_READY);
    EXPECT(CloseHandle(fence_handle));

    /* 2. A binary semaphore: export, import, close, signal one, wait on the other. */
    VkExportSemaphoreCreateInfo semaphore_export = {
        .sType = VK_STRUCTURE_TYPE_EXPORT_SEMAPHORE_CREATE_INFO,
        .handleTypes = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
    };
    VkSemaphore binary_a = create_semaphore(device, &semaphore_export);
    HANDLE binary_handle = export_semaphore(device, binary_a);
    VkSemaphore binary_b = create_semaphore(device, NULL);
    import_semaphore(device, binary_b, binary_handle);
    EXPECT(CloseHandle(binary_handle));
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkSubmitInfo submits[2] = {
        {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .signalSemaphoreCount = 1, .pSignalSemaphores = &binary_a},
        {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
         .waitSemaphoreCount = 1,
         .pWaitSemaphores = &binary_b,
         .pWaitDstStageMask = &stage},
    };
    VkFence done = create_fence(device, NULL);
    CHECK(vkQueueSubmit(queue, 2, submits, done));
    CHECK(vkWaitForFences(device, 1, &done, VK_TRUE, TIMEOUT_NS));

    /* 3. A timeline semaphore: an inheritable duplicate via SetHandleInformation, host signal on
     * one side, host wait on the other. */
    VkSemaphoreTypeCreateInfo timeline_type = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
        .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
        .initialValue = 1,
    };
    VkExportSemaphoreCreateInfo timeline_export = {
        .sType = VK_STRUCTURE_TYPE_EXPORT_SEMAPHORE_CREATE_INFO,
        .pNext = &timeline_type,
        .handleTypes = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_WIN32_BIT,
    };
    VkSemaphore timeline_a = create_semaphore(device, &timeline_export);
    HANDLE timeline_handle = export_semaphore(device, timeline_a);
    HANDLE inheritable = tether_duplicate_handle(timeline_handle, FALSE);
    EXPECT(inheritable != NULL);
    EXPECT(SetHandleInformation(inheritable, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT));
    EXPECT(GetHandleInformation(inheritable, &info) && info == HANDLE_FLAG_INHERIT);
    EXPECT(CloseHandle(timeline_handle));
    VkSemaphoreTypeCreateInfo plain_timeline = timeline_type;
    plain_timeline.initialValue = 0;
    VkSemaphore timeline_b = create_semaphore(device, &plain_timeline);
    import_semaphore(device, timeline_b, inheritable);
    EXPECT(CloseHandle(inheritable));
    uint64_t value = 0;
    CHECK(vkGetSemaphoreCounterValue(device, timeline_b, &value));
    EXPECT(value == 1);
    VkSemaphoreSignalInfo signal = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO, .semaphore = timeline_a, .value = 5};
    CHECK(vkSignalSemaphore(device, &signal));
    uint64_t target = 5;
    VkSemaphoreWaitInfo wait = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
        .semaphoreCount = 1,
        .pSemaphores = &timeline_b,
        .pValues = &target,
    };
    CHECK(vkWaitSemaphores(device, &wait, TIMEOUT_NS));

    /* 4. A KMT value: imported twice, never closed. */
    VkExportFenceCreateInfo kmt_export = {
        .sType = VK_STRUCTURE_TYPE_EXPORT_FENCE_CREATE_INFO,
        .handleTypes = VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_KMT_BIT,
    };
    VkFence kmt_a = create_fence(device, &kmt_export);
    VkFenceGetWin32HandleInfoKHR get_kmt = {
        .sType = VK_STRUCTURE_TYPE_FENCE_GET_WIN32_HANDLE_INFO_KHR,
        .fence = kmt_a,
        .handleType = VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_KMT_BIT,
    };
    HANDLE kmt = NULL;
    CHECK(get_fence_win32(device, &get_kmt, &kmt));
    EXPECT(kmt != NULL);
    VkFence kmt_b = create_fence(device, NULL);
    VkFence kmt_c = create_fence(device, NULL);
    import_fence(device, kmt_b, VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_KMT_BIT, 0, kmt, NULL);
    import_fence(device, kmt_c, VK_EXTERNAL_FENCE_HANDLE_TYPE_OPAQUE_WIN32_KMT_BIT, 0, kmt, NULL);
    CHECK(vkQueueSubmit(queue, 0, NULL, kmt_b));
    CHECK(vkWaitForFences(device, 1, &kmt_c, VK_TRUE, TIMEOUT_NS));
    CHECK(vkWaitForFences(device, 1, &kmt_a, VK_TRUE, TIMEOUT_NS));

    CHECK(vkQueueWaitIdle(queue));
    VkFence fences[] = {fence_a, fence_b, fence_c, done, kmt_a, kmt_b, kmt_c};
    for (size_t i = 0; i < sizeof fences / sizeof fences[0]; i++) vkDestroyFence(device, fences[i], NULL);
    VkSemaphore semaphores[] = {binary_a, binary_b, timeline_a, timeline_b};
    for (size_t i = 0; i < sizeof semaphores / sizeof semaphores[0]; i++)
        vkDestroySemaphore(device, semaphores[i], NULL);
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    printf("win32_import_export.c: all steps passed\n");
    return 0;
}
