"""The media half of the Channel API: voice and video on and off.

A mixin of Channel (kept apart so each file holds one concept): it starts
and stops the VoiceCall and VideoCall that plug into the channel's
MediaSession.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from bisc.app.video import SourceSpec, VideoCall
from bisc.app.voice import VoiceCall
from bisc.errors import BiscError
from bisc.media.sources import AudioSource
from bisc.media.video_codec import VideoCodec
from bisc.proto.media_control import CAMERA_STREAM, SCREEN_STREAM
from bisc.proto.messages import MediaState

if TYPE_CHECKING:
    from bisc.app.channel import Channel
    from bisc.app.media_session import MediaSession


class ChannelMedia:
    media: MediaSession
    voice: VoiceCall | None
    video: VideoCall | None
    _closed: bool

    async def start_voice(
        self,
        audio_in: str | AudioSource = "mic",
        audio_out: str = "speaker",
        *,
        device: str | int | None = None,
        input_device: str | int | None = None,
        output_device: str | int | None = None,
        quality: str = "medium",
        dtx: bool = False,
    ) -> VoiceCall:
        """Join the channel's voice call.

        audio_in: "mic", "tone", "tone:HZ", a WAV file, "none" (listen only) or an AudioSource;
        audio_out: "speaker", a WAV file or "none"; device names or indexes as `bisc devices` lists
        them (`device` for both directions); dtx: send silence as 1-byte packets. AudioError if a
        device cannot be opened."""
        if self._closed:
            raise BiscError("the channel is closed")
        if self.voice is not None:
            raise BiscError("voice is already on; stop_voice() first")
        call = VoiceCall(
            self._channel(),
            audio_in=audio_in,
            audio_out=audio_out,
            input_device=input_device if input_device is not None else device,
            output_device=output_device if output_device is not None else device,
            quality=quality,
            dtx=dtx,
        )
        await call.start()
        self.voice = call
        return call

    async def stop_voice(self) -> None:
        """Leave the voice call (the channel stays)."""
        call, self.voice = self.voice, None
        if call is not None:
            await call.stop()

    async def start_video(self, *, read_stamps: bool = False) -> VideoCall:
        """Receive the channel's video (and be ready to send it: start_camera, start_screen).

        read_stamps: measure glass-to-glass delay from the test pattern's pixels."""
        if self._closed:
            raise BiscError("the channel is closed")
        if self.video is None:
            call = VideoCall(self._channel(), read_stamps=read_stamps)
            await call.start()
            self.video = call
        return self.video

    async def stop_video(self) -> None:
        """Stop sending and receiving video (the channel stays)."""
        call, self.video = self.video, None
        if call is not None:
            await call.stop()

    async def start_camera(
        self,
        source: SourceSpec,
        *,
        size: tuple[int, int],
        fps: float = 30.0,
        codec: VideoCodec = "vp8",
        quality: str = "auto",
    ) -> None:
        """Send `source` (a camera, the test pattern, a file) as this node's camera stream.

        quality: "auto", or a cap: "low" (360p), "standard" (720p), "high" (1080p)."""
        video = await self.start_video()
        await video.start_stream(
            CAMERA_STREAM, source, size=size, fps=fps, codec=codec, quality=quality, name="camera"
        )

    async def start_screen(
        self,
        source: SourceSpec,
        *,
        size: tuple[int, int],
        fps: float = 15.0,
        codec: VideoCodec = "vp8",
        quality: str = "auto",
    ) -> None:
        """Share a screen or window (a source from bisc.media.video_sources); quality as start_camera."""
        video = await self.start_video()
        await video.start_stream(
            SCREEN_STREAM, source, size=size, fps=fps, codec=codec, quality=quality, name="screen"
        )

    async def stop_camera(self) -> None:
        if self.video is not None:
            await self.video.stop_stream(CAMERA_STREAM)

    async def stop_screen(self) -> None:
        if self.video is not None:
            await self.video.stop_stream(SCREEN_STREAM)

    def media_state(self) -> MediaState:
        """What this node sends now: muted or not, camera and screen on or off."""
        voice, video = self.voice, self.video
        return MediaState(
            audio_muted=voice.muted if voice is not None else False,
            video_enabled=video is not None and video.sending(CAMERA_STREAM),
            screen_sharing=video is not None and video.sending(SCREEN_STREAM),
        )

    def announce_media_state(self) -> None:
        """Tell the channel the whole media state (one message carries all of it: a mute must not
        clear the camera flag, nor a camera change the mute)."""
        with contextlib.suppress(BiscError):
            self._channel()._broadcast(self.media_state())

    def _channel(self) -> Channel:
        from bisc.app.channel import Channel

        assert isinstance(self, Channel)
        return self
