# The native engine. Sources are listed by command expansion so a new kernel file
# needs no edit here: every src/**/*.cc goes into the addon, except *_avx2.cc,
# *_avxvnni.cc and *_avx512.cc files, which are compiled with AVX2/FMA/F16C (resp. those
# plus AVX-VNNI; AVX-512 F/BW/VL/DQ, BF16, VNNI) flags into their own static libraries and chosen at run time
# (src/cpu/dispatch.h: __builtin_cpu_supports), so the addon runs on any x86-64.
# Where nvcc exists (tools/find-nvcc.sh), src/cuda/*.cu become build/Release/
# libhybridchat_cuda.so (one translation unit, tools/nvcc-unity.sh; cudart static),
# which the addon dlopens at run time; without
# nvcc the build is CPU only and the addon reports cuda as not built.
{
  "variables": {
    "nvcc%": "<!(sh tools/find-nvcc.sh)",
    "avx512_flags": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                     "-mavx512bf16", "-mavx512vnni"]
  },
  "target_defaults": {
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "src"],
    "cflags!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags": ["-O3", "-pthread", "-fno-math-errno"],
    "cflags_cc": ["-std=c++17", "-O3", "-pthread", "-fexceptions", "-fno-math-errno"],
    "ldflags": ["-pthread"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CFLAGS": ["-O3"]
    }
  },
  "targets": [
    {
      "target_name": "hybridchat",
      "sources": ["<!@(find src -name '*.cc' ! -name '*_avx2.cc' ! -name '*_avxvnni.cc' ! -name '*_avx512.cc' | sort)"],
      "libraries": ["-ldl"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", {
          "dependencies": ["hybridchat_avx2", "hybridchat_avxvnni", "hybridchat_avx512"],
          "defines": ["HC_HAVE_AVX2_TU=1", "HC_HAVE_AVXVNNI_TU=1", "HC_HAVE_AVX512_TU=1"]
        }]
      ]
    }
  ],
  "conditions": [
    ["nvcc!=''", {
      "targets": [
        {
          "target_name": "hybridchat_cuda",
          "type": "none",
          "actions": [
            {
              "action_name": "nvcc_shared_library",
              "message": "nvcc: libhybridchat_cuda.so (sm_80, sm_90, compute_90 PTX)",
              "inputs": ["<!@(find src/cuda -name '*.cu' -o -name '*.cuh' -o -name '*.h' | sort)"],
              "outputs": ["<(PRODUCT_DIR)/libhybridchat_cuda.so"],
              "action": [
                "sh", "tools/nvcc-unity.sh", "<(nvcc)", "-shared", "-std=c++17", "-O3", "--threads", "0",
                "-gencode", "arch=compute_80,code=sm_80",
                "-gencode", "arch=compute_90,code=sm_90",
                "-gencode", "arch=compute_90,code=compute_90",
                "-cudart", "static",
                "-Xcompiler", "-fPIC,-fvisibility=hidden",
                "-Xlinker", "--exclude-libs,ALL", "-Xlinker", "--no-undefined",
                "-o", "<@(_outputs)",
                "<!@(find src/cuda -name '*.cu' | sort)"
              ]
            }
          ]
        }
      ]
    }],
    ["target_arch=='x64' or target_arch=='ia32'", {
      "targets": [
        {
          "target_name": "hybridchat_avx2",
          "type": "static_library",
          "sources": ["<!@(find src -name '*_avx2.cc' | sort)"],
          "cflags": ["-mavx2", "-mfma", "-mf16c", "-fPIC"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-fPIC"],
          "xcode_settings": { "OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c"] }
        },
        {
          "target_name": "hybridchat_avxvnni",
          "type": "static_library",
          "sources": ["<!@(find src -name '*_avxvnni.cc' | sort)"],
          "cflags": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni", "-fPIC"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni", "-fPIC"],
          "xcode_settings": { "OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"] }
        },
        {
          "target_name": "hybridchat_avx512",
          "type": "static_library",
          "sources": ["<!@(find src -name '*_avx512.cc' | sort)"],
          "cflags": ["<@(avx512_flags)", "-fPIC"],
          "cflags_cc": ["<@(avx512_flags)", "-fPIC"],
          "xcode_settings": { "OTHER_CFLAGS": ["<@(avx512_flags)"] }
        }
      ]
    }]
  ]
}
