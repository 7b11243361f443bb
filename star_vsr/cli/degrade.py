"""``star-vsr degrade HR_VIDEO -o LR_VIDEO``: a realistic low-quality version of a clean video.

Real-ESRGAN's second-order chain (blur, resize, noise, JPEG, twice, then resize + sinc) with one
draw of parameters for the whole video, so the degradation is coherent in time, followed by
video-codec compression (libx264 or mpeg4). Long videos are processed in segments of a few dozen
frames that share the drawn parameters; each segment is compressed as a clip (a keyframe at each
segment start, like a GOP). The result is written as a video (H.264 for .mp4, lossless FFV1 for
.mkv with ``--codec ffv1``) with the input's frame rate and audio. Same input and ``--seed`` give
the same frames (H.264 is encoded without x264's assembly code for that: with it, runs differed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..errors import InputError
from .upscale import add_fps_argument, input_notes, seed_argument

#: Bytes of float32 HR frames processed at once (bounds memory for large frames).
SEGMENT_BYTES = 256 * 2 ** 20
MAX_SEGMENT_FRAMES = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("degrade", help="make a realistic low-quality version of a clean video",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="clean (HR) video file or image folder")
    parser.add_argument("-o", "--output", required=True, help="degraded (LR) video to write")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="downscale factor (default 4)")
    parser.add_argument("--preset", default="medium", choices=("light", "medium", "heavy"),
                        help="degradation strength (default medium)")
    parser.add_argument("--seed", type=seed_argument, default=0, help="random seed (default 0)")
    parser.add_argument("--codec", default=None, choices=("h264", "h265", "ffv1", "png"),
                        help="container codec of the written file (default: from the output name)")
    parser.add_argument("--crf", type=int, default=None,
                        help="x264/x265 quality of the written file, lower is better (default 18 for h264, 24 for h265)")
    parser.add_argument("--deinterlace", default="auto", choices=("auto", "on", "off"),
                        help="deinterlace the input first with FFmpeg's bwdif (auto: when it is flagged interlaced)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_fps_argument(parser)
    parser.add_argument("--print-params", action="store_true",
                        help="print the drawn degradation parameters (JSON)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..degradations import DegradationConfig, RealWorldDegradation
    from ..io import VideoWriter, deinterlace_choice, open_video, probe_video
    from ..io.probe import check_exists
    from ..outputs import check_new_video_output

    check_exists(args.input)  # a missing input is the first thing to say, before anything about -o
    output = check_new_video_output(args.output, args.overwrite, args.input)
    deinterlace = deinterlace_choice(args.deinterlace)
    for note in input_notes(args.input, deinterlace, args.fps):  # a missing, corrupt or empty input fails here
        print(f"note: {note}")
    folder_fps = {} if args.fps is None else {"folder_fps": args.fps}
    info = probe_video(args.input, **folder_fps)
    degradation = RealWorldDegradation(DegradationConfig.preset(args.preset), args.scale)
    generator = torch.Generator().manual_seed(args.seed)
    params = degradation.sample_params(generator)
    if args.print_params:
        print(json.dumps(dataclasses.asdict(params), indent=2))
    audio = args.input if info.has_audio and not info.is_image_folder else None
    reader = open_video(args.input, deinterlace=deinterlace, **folder_fps)
    with reader, VideoWriter(output, info.frame_rate, codec=args.codec, crf=args.crf, audio_from=audio,
                             progress=True, total_frames=info.num_frames, pixel_aspect=info.pixel_aspect,
                             frame_times=info.timeline, reproducible=True) as writer:
        # HR sizes: multiples of the scale times what the output format stores unpadded (2 for 4:2:0),
        # so the LR file has exactly 1 / scale of the HR size that `star-vsr evaluate` compares with
        multiple_h, multiple_w = args.scale * writer.size_multiple[0], args.scale * writer.size_multiple[1]
        crop_h, crop_w = info.height - info.height % multiple_h, info.width - info.width % multiple_w
        if crop_h == 0 or crop_w == 0:
            raise InputError(f"{args.input} is {info.width}x{info.height}, too small to downscale by {args.scale}")
        if (crop_h, crop_w) != (info.height, info.width):
            print(f"note: cropping {info.width}x{info.height} to {crop_w}x{crop_h} (a multiple of "
                  f"{multiple_w}x{multiple_h}: the scale times the output format's block); evaluate "
                  f"results against {args.input} with `star-vsr evaluate --crop-gt`")
        segment = max(1, min(MAX_SEGMENT_FRAMES, SEGMENT_BYTES // (crop_h * crop_w * 3 * 4)))
        for frames in reader.iter_chunks(segment):  # (k, h, w, 3) uint8
            hr = torch.from_numpy(frames[:, :crop_h, :crop_w]).permute(0, 3, 1, 2).float() / 255
            lr = degradation.apply(hr, params, generator)  # (k, 3, h/s, w/s) on 8-bit levels
            writer.write((lr * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy())
    print(f"wrote {output} ({crop_w // args.scale}x{crop_h // args.scale}, preset {args.preset}, seed {args.seed})")
    return 0
